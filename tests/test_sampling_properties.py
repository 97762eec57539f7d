"""Property test (hypothesis) of sampling: draws stay in filter_logits' allowed set.
Skipped alone where hypothesis is not installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmaxkit as smk

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

NEG_INF = -np.inf

_rows = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 30)),
    elements=st.one_of(
        st.floats(-30, 30, allow_nan=False),
        st.just(NEG_INF),
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    logits=_rows,
    top_k=st.one_of(st.none(), st.integers(1, 10)),
    top_p=st.one_of(st.none(), st.floats(0.05, 1.0)),
    min_p=st.one_of(st.none(), st.floats(0.0, 1.0)),
    temperature=st.one_of(st.just(0.0), st.floats(0.1, 10.0), st.just(math.inf)),
    seed=st.integers(0, 2**32 - 1),
)
def test_draws_stay_in_the_allowed_set(logits, top_k, top_p, min_p, temperature, seed):
    options = {"top_k": top_k, "top_p": top_p, "min_p": min_p, "temperature": temperature}
    filtered = smk.filter_logits(logits, **options)
    allowed = np.isfinite(filtered)
    has_entry = np.isfinite(logits).any(axis=1)
    # Every row with an entry keeps at least one; the others stay empty.
    np.testing.assert_array_equal(allowed.any(axis=1), has_entry)
    assert not (allowed & ~np.isfinite(logits)).any()
    if temperature == 0.0:
        assert (allowed.sum(axis=1) == has_entry).all()
    if not has_entry.all():
        with pytest.raises(ValueError, match="has no allowed entry"):
            smk.sample(logits, rng=seed, **options)
        return
    for method in ("inverse_cdf", "gumbel"):
        draws = smk.sample(logits, num_samples=64, method=method, rng=seed, **options)
        assert np.take_along_axis(allowed, draws, axis=1).all()
