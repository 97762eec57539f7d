"""The semantics table of the README, one row per test, on every array library."""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmaxkit as smk

INF = math.inf
NAN = math.nan

# input row -> (softmax, log_softmax, logsumexp)
EDGE_TABLE = {
    "all -inf": ([-INF, -INF, -INF], [0.0, 0.0, 0.0], [-INF, -INF, -INF], -INF),
    "some -inf": (
        [0.0, -INF, 0.0],
        [0.5, 0.0, 0.5],
        [-math.log(2), -INF, -math.log(2)],
        math.log(2),
    ),
    "one +inf": ([INF, 1.0, -INF], [1.0, 0.0, 0.0], [0.0, -INF, -INF], INF),
    "two +inf": ([INF, 1.0, INF], [0.5, 0.0, 0.5], [-math.log(2), -INF, -math.log(2)], INF),
    "+inf and -inf": ([INF, -INF], [1.0, 0.0], [0.0, -INF], INF),
    "NaN": ([NAN, 1.0, 2.0], [NAN] * 3, [NAN] * 3, NAN),
    "NaN and +inf": ([NAN, INF], [NAN] * 2, [NAN] * 2, NAN),
    "large magnitudes": (
        [1e30, -1e30, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, -2e30, -1e30],
        1e30,
    ),
    "float max": (
        [np.finfo(np.float64).max, -np.finfo(np.float64).max],
        [1.0, 0.0],
        [0.0, -INF],
        np.finfo(np.float64).max,
    ),
    "equal": ([7.0, 7.0, 7.0, 7.0], [0.25] * 4, [-math.log(4)] * 4, 7.0 + math.log(4)),
}


def assert_same(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-15, atol=0, equal_nan=True)


@pytest.mark.parametrize("case", sorted(EDGE_TABLE))
def test_edge_table(backend, case):
    row, p, lp, lse = EDGE_TABLE[case]
    x = backend.asarray(row, dtype=np.float64)
    results = [smk.softmax(x), smk.log_softmax(x), smk.logsumexp(x)]
    for result, expected in zip(results, (p, lp, lse)):
        assert backend.is_native(result)
        assert_same(backend.to_numpy(result), expected)


def test_edge_table_fast_and_generic(numpy_path):
    for row, p, lp, lse in EDGE_TABLE.values():
        x = np.asarray(row)
        assert_same(smk.softmax(x), p)
        assert_same(smk.log_softmax(x), lp)
        assert_same(smk.logsumexp(x), lse)


def test_edge_rows_in_one_batch(backend):
    """Edge rows next to ordinary rows do not disturb each other."""
    rows = [case[0] for case in EDGE_TABLE.values() if len(case[0]) == 3]
    x = backend.asarray(rows)
    p = backend.to_numpy(smk.softmax(x))
    for i, row in enumerate(rows):
        assert_same(p[i], np.asarray(smk.softmax(np.asarray(row))))


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)])
def test_empty(backend, shape):
    if backend.name == "tensorflow" and 0 in shape[-1:]:
        pass
    x = backend.asarray(np.zeros(shape))
    p = smk.softmax(x)
    lp = smk.log_softmax(x)
    lse = smk.logsumexp(x)
    assert tuple(p.shape) == shape and tuple(lp.shape) == shape
    assert tuple(lse.shape) == shape[:-1]
    expected = np.full(shape[:-1], -INF) if shape[-1] == 0 else np.zeros(shape[:-1])
    if shape[-1] != 0:
        expected = np.full(shape[:-1], 0.0)
    assert_same(backend.to_numpy(lse), expected)


def test_zero_d(backend):
    for value, p, lp in ((2.5, 1.0, 0.0), (-INF, 0.0, -INF), (INF, 1.0, 0.0), (NAN, NAN, NAN)):
        x = backend.asarray(value)
        assert_same(backend.to_numpy(smk.softmax(x)), p)
        assert_same(backend.to_numpy(smk.log_softmax(x)), lp)
        assert_same(backend.to_numpy(smk.logsumexp(x)), value)


def test_masked_rows(backend):
    x = backend.asarray([[1.0, 2.0, 3.0], [4.0, NAN, 6.0]])
    keep = backend.asarray([[False, False, False], [True, False, True]])
    p = backend.to_numpy(smk.softmax(x, where=keep))
    lp = backend.to_numpy(smk.log_softmax(x, where=keep))
    lse = backend.to_numpy(smk.logsumexp(x, where=keep))
    assert_same(p[0], [0.0, 0.0, 0.0])
    assert_same(lp[0], [-INF, -INF, -INF])
    assert lse[0] == -INF
    # Masking an entry means deleting it: a masked NaN does not poison its row.
    np.testing.assert_allclose(p[1][[0, 2]], np.asarray(smk.softmax([4.0, 6.0])), rtol=1e-15)
    assert p[1][1] == 0.0 and lp[1][1] == -INF
    np.testing.assert_allclose(lse[1], float(smk.logsumexp([4.0, 6.0])), rtol=1e-15)


@pytest.mark.parametrize("temperature", [0.0, INF])
def test_temperature_limits(backend, temperature):
    x = backend.asarray([[1.0, 3.0, 3.0, -INF], [-INF, -INF, -INF, -INF], [INF, 0.0, INF, 1.0]])
    p = backend.to_numpy(smk.softmax(x, temperature=temperature))
    if temperature == 0:
        expected = [[0, 0.5, 0.5, 0], [0, 0, 0, 0], [0.5, 0, 0.5, 0]]
    else:
        expected = [[1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0], [0.5, 0, 0.5, 0]]
    assert_same(p, expected)
    lp = backend.to_numpy(smk.log_softmax(x, temperature=temperature))
    with np.errstate(divide="ignore"):
        assert_same(lp, np.log(np.asarray(expected)))


def test_logsumexp_temperature_zero_limit():
    assert smk.logsumexp([1.0, 2.0], temperature=0) == INF
    assert smk.logsumexp([-1.0, -2.0], temperature=0) == -INF
    np.testing.assert_allclose(smk.logsumexp([0.0, 0.0, -1.0], temperature=0), math.log(2))
    np.testing.assert_allclose(smk.logsumexp([0.0, 5.0, -INF], temperature=INF), math.log(2))


def test_per_row_temperature(backend):
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    temperature = np.array([[0.0], [2.0], [INF]])
    p = backend.to_numpy(smk.softmax(backend.asarray(x), temperature=backend.asarray(temperature)))
    assert_same(p[0], [0, 0, 1])
    np.testing.assert_allclose(p[1], np.exp(x[1] / 2) / np.exp(x[1] / 2).sum(), rtol=1e-15)
    assert_same(p[2], [1 / 3, 1 / 3, 1 / 3])


def test_no_warning_on_any_edge(recwarn):
    for row, *_ in EDGE_TABLE.values():
        for dtype in (np.float16, np.float32, np.float64):
            with np.errstate(over="ignore"):
                x = np.asarray(row).astype(dtype)
            smk.softmax(x), smk.log_softmax(x), smk.logsumexp(x)
            smk.softmax(x, temperature=0.0), smk.softmax(x, temperature=INF)
            smk.softmax(x, temperature=1e-300), smk.log_softmax(x, temperature=1e300)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_logsumexp_weights_like_scipy():
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5))
    b = rng.standard_normal((6, 5))
    value, sign = smk.logsumexp(x, b=b, return_sign=True)
    ref_value, ref_sign = special.logsumexp(x, axis=-1, b=b, return_sign=True)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_array_equal(sign, ref_sign)
    without_sign = smk.logsumexp(x, b=b)
    assert np.all(np.isnan(without_sign[sign < 0]))
    # b == 0 entries take no part, even at +inf; a zero total gives -inf with sign 0.
    assert smk.logsumexp([INF, 1.0], b=[0.0, 1.0]) == 1.0
    assert smk.logsumexp([0.0, 0.0], b=[1.0, -1.0], return_sign=True) == (-INF, 0.0)


def test_logsumexp_keepdims_and_axes(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4))
    xa = backend.asarray(x)
    for axis in (0, 1, -1, (0, 2), None):
        expected = np.log(np.sum(np.exp(x), axis=axis, keepdims=True))
        got = backend.to_numpy(smk.logsumexp(xa, axis=axis, keepdims=True))
        np.testing.assert_allclose(got, expected, rtol=1e-13)
        got = backend.to_numpy(smk.logsumexp(xa, axis=axis))
        np.testing.assert_allclose(got, np.squeeze(expected, axis=axis), rtol=1e-13)
        p = backend.to_numpy(smk.softmax(xa, axis=axis))
        np.testing.assert_allclose(p, np.exp(x) / np.sum(np.exp(x), axis=axis, keepdims=True))


def _mp_log_softmax(row, temperature):
    import mpmath

    with mpmath.workdps(60):
        scaled = [mpmath.mpf(float(v)) / mpmath.mpf(temperature) for v in row]
        top = max(scaled)
        log_total = mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in scaled))
        return [v - top - log_total for v in scaled], top + log_total


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5, 1e30])
def test_differences_beyond_the_float_range(backend, dtype, temperature):
    """log_softmax([DBL_MAX, -1]) gave [0, -inf] on the generic path and on torch tensors,
    for [0, -1.797e308]: x - max was taken to overflow whenever x < max - largest. Where
    x - max does overflow, the entry's limit is -inf, unless a temperature above 1
    brings (x - max) / T back into the range. NumPy input runs the compiled kernel
    here (the numpy backend) and the generic path (numpy_generic)."""
    _check_beyond_the_range(backend, dtype, temperature)


@pytest.mark.parametrize("temperature", [2.5, 3.0])
@pytest.mark.parametrize("layout", ["rows", "long row", "axis 0", "masked", "row temperature"])
def test_kernel_differences_beyond_the_float_range(numpy_path, layout, temperature):
    """float64 rows spread wider than DBL_MAX with a temperature above 1, in every layout
    the kernel reads them in (rows in a buffer, a row longer than one chunk, columns,
    a mask, a temperature per row): x - max overflows where (x - max) / T does not."""
    largest = float(np.finfo(np.float64).max)
    row = np.array([largest / 2, -largest, 1.0, -largest / 3, largest, -largest, 7.0])
    if layout == "long row":
        row = np.concatenate([row, np.full(140_000, -largest / 2)])
    exact_lp, exact_lse = _mp_log_softmax(list(row[:7]) + ([-largest / 2] if len(row) > 7
                                                          else []), temperature)
    expected_lp = np.array([float(v) for v in exact_lp])
    if len(row) > 7:
        # Every entry -largest / 2 has the same log-probability; the normalizer is
        # exp(0) plus terms far below its rounding.
        expected_lp = np.concatenate([expected_lp[:7], np.full(len(row) - 7, expected_lp[7])])
    x = np.stack([row, row[::-1].copy()])
    expected = np.stack([expected_lp, expected_lp[::-1]])
    kwargs = {"temperature": temperature}
    axis = -1
    if layout == "axis 0":
        x, expected, axis = x.T.copy(), expected.T, 0
    if layout == "masked":
        where = np.ones(x.shape, dtype=bool)
        where[:, 2] = where[:, -3] = False
        kwargs["where"] = where
        expected = np.full(x.shape, -np.inf)
        for r in range(2):
            kept, _ = _mp_log_softmax(list(x[r, where[r]]), temperature)
            expected[r, where[r]] = [float(v) for v in kept]
    if layout == "row temperature":
        kwargs["temperature"] = np.array([[temperature], [temperature]])
    lp = smk.log_softmax(x, axis=axis, **kwargs)
    np.testing.assert_allclose(lp, expected, rtol=4 * np.finfo(np.float64).eps, atol=0)
    np.testing.assert_array_equal(np.isinf(lp), np.isinf(expected))
    p = smk.softmax(x, axis=axis, **kwargs)
    np.testing.assert_allclose(p, np.exp(expected), rtol=1e-14, atol=0)
    if layout == "rows":
        lse = smk.logsumexp(x, axis=axis, **kwargs)
        np.testing.assert_allclose(lse, [float(exact_lse)] * 2, rtol=4e-16, atol=0)


def test_cross_entropy_beyond_the_float_range(numpy_path):
    """The fused cross-entropy pass: m - x_t overflows where (m - x_t) / T does not."""
    largest = float(np.finfo(np.float64).max)
    x = np.array([[largest, -largest, 1.0], [1.0, 2.0, 3.0]])
    target = np.array([1, 0])
    temperature = 2.5
    loss, grad = smk.cross_entropy(x, target, temperature=temperature, reduction="none",
                                   return_grad=True)
    expected = [-float(_mp_log_softmax(list(r), temperature)[0][t]) for r, t in zip(x, target)]
    np.testing.assert_allclose(loss, expected, rtol=4e-16, atol=0)
    # d loss / d x = (softmax - onehot) / T
    lp = np.array([[float(v) for v in _mp_log_softmax(list(r), temperature)[0]] for r in x])
    onehot = np.eye(3)[target]
    np.testing.assert_allclose(grad, (np.exp(lp) - onehot) / temperature, rtol=1e-14,
                               atol=1e-300)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.75])
@pytest.mark.parametrize("smoothing", [0.1, 0.9])
def test_label_smoothing_beyond_the_float_range(numpy_path, smoothing, temperature):
    """Label smoothing takes mean(lse - x_c) / T: on a row spread wider than DBL_MAX some
    lse - x_c overflow where the smoothed loss does not (it was inf)."""
    import mpmath

    if numpy_path == "generic":
        pytest.xfail("the portable path still sums log-probabilities, which overflow to -inf")

    largest = float(np.finfo(np.float64).max)
    x = np.array([[1e308, -1e308, 0.0, 5.0], [largest / 2, -largest, -largest / 4, 1.0],
                  [1.0, 2.0, 3.0, 4.0]])
    target = np.array([0, 3, 1])
    loss, grad = smk.cross_entropy(x, target, temperature=temperature, label_smoothing=smoothing,
                                   reduction="none", return_grad=True)
    expected, expected_grad = [], []
    with mpmath.workdps(60):
        for row, t in zip(x, target):
            scaled = [mpmath.mpf(float(v)) / temperature for v in row]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in scaled))
            smoothed = mpmath.fsum(lse - v for v in scaled) / len(row)
            expected.append(float((1 - smoothing) * (lse - scaled[t]) + smoothing * smoothed))
            q = [smoothing / len(row) + (1 - smoothing) * (c == t) for c in range(len(row))]
            expected_grad.append([float((mpmath.exp(v - lse) - qc) / temperature)
                                  for v, qc in zip(scaled, q)])
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(loss, expected, rtol=1e-15, atol=0)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-14, atol=1e-300)


def _check_beyond_the_range(backend, dtype, temperature):
    import warnings

    largest = float(np.finfo(dtype).max)
    for row in ([largest, -1.0], [largest, -largest], [largest / 2, -largest, -largest / 4]):
        x = backend.asarray(np.asarray(row, dtype=dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = backend.to_numpy(smk.softmax(x, temperature=temperature))
            lp = backend.to_numpy(smk.log_softmax(x, temperature=temperature))
            lse = backend.to_numpy(smk.logsumexp(x, temperature=temperature))
        exact_lp, exact_lse = _mp_log_softmax(row, temperature)
        with np.errstate(over="ignore"):
            expected_lp = np.array([float(v) for v in exact_lp]).astype(dtype)
            expected_lse = np.asarray(float(exact_lse)).astype(dtype)
        np.testing.assert_allclose(lp, expected_lp, rtol=4 * np.finfo(dtype).eps, atol=0)
        np.testing.assert_array_equal(np.isinf(lp), np.isinf(expected_lp))
        np.testing.assert_allclose(p, np.exp(expected_lp.astype(np.float64)), rtol=1e-6, atol=0)
        np.testing.assert_allclose(lse, expected_lse, rtol=4 * np.finfo(dtype).eps, atol=0)
