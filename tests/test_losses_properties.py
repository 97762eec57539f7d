"""Property test (hypothesis) of cross_entropy: non-negative, gradient rows summing to 0,
shift invariance. Skipped alone where hypothesis is not installed."""

from __future__ import annotations

import numpy as np
import pytest

import softmaxkit as smk

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_ROWS = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=st.floats(-1e3, 1e3, allow_nan=False),
)


@settings(max_examples=40, deadline=None)
@given(logits=_ROWS, data=st.data())
def test_cross_entropy_properties(logits, data):
    n_rows, n_classes = logits.shape
    target = np.array(
        data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n_rows, max_size=n_rows))
    )
    shift = data.draw(st.floats(-1e3, 1e3))
    loss, grad = smk.cross_entropy(logits, target, reduction="none", return_grad=True)
    assert np.all(loss >= 0)
    # Gradient rows of softmax - onehot sum to 0; shifting a row leaves the loss alone.
    np.testing.assert_allclose(grad.sum(axis=-1), 0.0, atol=4 * n_classes * 2.0**-52)
    shifted = smk.cross_entropy(logits + shift, target, reduction="none")
    tolerance = 4 * 2.0**-52 * (np.abs(logits).max(axis=-1) + abs(shift) + 1)
    assert np.all(np.abs(shifted - loss) <= tolerance + 4 * 2.0**-52 * loss)
