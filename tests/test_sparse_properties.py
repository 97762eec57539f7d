"""Property tests (hypothesis) of sparsemax, entmax15 and entmax: distributions, shift
invariance, order equivariance. Skipped alone where hypothesis is not installed."""

from __future__ import annotations

import numpy as np
import pytest

import softmaxkit as smk

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    row=arrays(np.float64, st.integers(1, 12), elements=st.floats(-50, 50)),
    shift=st.floats(-100, 100),
    seed=st.integers(0, 2**16),
)
def test_properties_shift_invariance_and_order_equivariance(row, shift, seed):
    permutation = np.random.default_rng(seed).permutation(row.size)
    for mapping in (smk.sparsemax, smk.entmax15, lambda v: smk.entmax(v, alpha=1.6)):
        y = mapping(row)
        assert np.all(y >= 0)
        assert abs(y.sum() - 1) < 1e-12
        assert y[np.argmax(row)] > 0
        np.testing.assert_allclose(mapping(row + shift), y, atol=1e-11)
        np.testing.assert_allclose(mapping(row[permutation]), y[permutation], atol=1e-12)
