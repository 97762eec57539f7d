"""Property-based tests (hypothesis) of the invariants of softmax."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmaxkit as smk

finite64 = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
rows64 = hnp.arrays(np.float64, st.integers(1, 40), elements=finite64)
moderate = st.floats(min_value=-700, max_value=700, allow_nan=False)
rows_moderate = hnp.arrays(np.float64, st.integers(1, 40), elements=moderate)
scores32 = st.floats(min_value=-(2.0**100), max_value=2.0**100, allow_nan=False, width=32)
rows32 = hnp.arrays(np.float32, st.integers(1, 40), elements=scores32)
settings.register_profile("softmaxkit", max_examples=150, deadline=None)
settings.load_profile("softmaxkit")


@given(rows64)
def test_rows_sum_to_one(x):
    p = smk.softmax(x)
    assert np.all(p >= 0) and np.all(p <= 1)
    assert (
        abs(float(np.sum(p, dtype=np.longdouble)) - 1.0)
        <= 4 * 2**-53 * max(1, len(x)) ** 0.5 + 4 * 2**-53
    )


@given(rows32)
def test_rows_sum_to_one_float32(x):
    p = smk.softmax(x)
    assert p.dtype == np.float32
    assert abs(float(np.sum(p, dtype=np.float64)) - 1.0) <= 2 * 2**-24 * len(x) ** 0.5 + 2**-23


@given(rows_moderate, st.floats(min_value=-1e3, max_value=1e3, allow_nan=False))
def test_invariant_to_a_constant_shift(x, constant):
    shifted = x + constant
    # Only when the shift itself is exact does the exact answer stay the same.
    if not np.array_equal(shifted - constant, x):
        return
    np.testing.assert_allclose(smk.softmax(shifted), smk.softmax(x), rtol=1e-13, atol=1e-300)


@given(rows64, st.randoms(use_true_random=False))
def test_order_equivariant(x, random):
    order = list(range(len(x)))
    random.shuffle(order)
    # The order of the entries changes only the order of the sum, so the results agree
    # to within the rounding of the normalizer.
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(
        smk.softmax(x[order]), smk.softmax(x)[order], rtol=2 * eps, atol=1e-320
    )
    np.testing.assert_allclose(
        smk.log_softmax(x[order]), smk.log_softmax(x)[order], rtol=2 * eps, atol=2 * eps
    )


@given(rows64)
def test_log_softmax_is_log_of_softmax(x):
    p = smk.softmax(x)
    lp = smk.log_softmax(x)
    normal = p > np.finfo(np.float64).tiny
    np.testing.assert_allclose(np.log(p[normal]), lp[normal], rtol=4e-15, atol=4e-16)
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-14, atol=1e-307)


@given(rows64)
def test_logsumexp_consistent_with_log_softmax(x):
    lse = smk.logsumexp(x)
    lp = smk.log_softmax(x)
    top = int(np.argmax(x))
    # log_softmax at the maximum is max - logsumexp, up to the rounding of that difference.
    np.testing.assert_allclose(x[top] - lse, lp[top], atol=4 * np.spacing(max(abs(lse), 1.0)))


@given(hnp.arrays(np.float64, (3, 5), elements=moderate), hnp.arrays(np.bool_, (3, 5)))
def test_masking_is_deleting(x, keep):
    p = smk.softmax(x, where=keep)
    lse = smk.logsumexp(x, where=keep)
    for i in range(3):
        kept = x[i][keep[i]]
        if kept.size == 0:
            assert np.all(p[i] == 0) and lse[i] == -np.inf
            continue
        np.testing.assert_allclose(p[i][keep[i]], smk.softmax(kept), rtol=1e-15)
        assert np.all(p[i][~keep[i]] == 0)
        np.testing.assert_allclose(lse[i], smk.logsumexp(kept), rtol=1e-15)
