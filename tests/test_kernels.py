"""The compiled kernels against the generic path and against a high-precision reference."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _dispatch, _kernels

pytestmark = pytest.mark.skipif(
    not _kernels.kernel_available(), reason="the compiled kernels are not built"
)

FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}
ULP_BOUND = {np.dtype(np.float32): 2, np.dtype(np.float64): 4}
INF = math.inf

try:
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - optional dependency
    BFLOAT16 = None


def kernel_call(name, x, **options):
    """Call ``name`` and check that the kernel ran."""
    before = _dispatch.counts["kernel"]
    result = FUNCTIONS[name](x, **options)
    assert _dispatch.counts["kernel"] == before + 1, "the kernel did not run"
    return result


def generic_call(name, x, **options):
    before = _dispatch.counts["generic"]
    with _kernels.generic_only():
        result = FUNCTIONS[name](x, **options)
    assert _dispatch.counts["generic"] == before + 1
    return result


# ---- the reference: rows in long double (x86: 64-bit significand), mpmath for short rows ----


def reference(name, x, axis=-1, temperature=1.0):
    """softmax / log_softmax / logsumexp of finite float rows, in np.longdouble."""
    xl = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1).astype(np.longdouble)
    t = np.longdouble(temperature)
    top = xl.max(axis=-1, keepdims=True)
    shifted = (xl - top) / t
    terms = np.exp(shifted)
    is_top = shifted == 0
    # log(total) as log1p(total - 1), the 1 of the maximum removed exactly.
    total_minus_one = (is_top.sum(axis=-1, keepdims=True) - 1) + np.where(is_top, 0, terms).sum(
        axis=-1, keepdims=True
    )
    log_total = np.log1p(total_minus_one)
    if name == "softmax":
        result = terms / (total_minus_one + 1)
    elif name == "log_softmax":
        result = shifted - log_total
    else:
        return (top / t + log_total)[..., 0]
    return np.moveaxis(result, -1, axis)


def reference_mp(name, row, temperature=1.0):
    import mpmath

    with mpmath.workprec(300):
        values = [mpmath.mpf(float(v)) / mpmath.mpf(temperature) for v in row]
        top = max(values)
        shifted = [v - top for v in values]
        count = sum(1 for s in shifted if s == 0)
        rest = mpmath.fsum(mpmath.exp(s) for s in shifted if s != 0)
        log_total = mpmath.log1p((count - 1) + rest)
        if name == "softmax":
            return np.array([float(mpmath.exp(s) / (count + rest)) for s in shifted])
        if name == "log_softmax":
            return np.array([float(s - log_total) for s in shifted])
        return np.float64(float(top + log_total))


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the last place of ``exact`` rounded to ``dtype``."""
    exact = np.asarray(exact, dtype=np.longdouble)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = exact.astype(dtype)
        finite = np.isfinite(rounded)
        spacing = np.spacing(np.abs(np.where(finite, rounded, 1))).astype(np.longdouble)
        error = np.abs(np.asarray(got, dtype=np.longdouble) - exact) / spacing
    # Where the exact value rounds to an infinity, so must the result.
    return np.where(finite, error, np.where(np.asarray(got) == rounded, 0, np.inf))


def assert_accurate(name, got, x, dtype, axis=-1, temperature=1.0, exact=None):
    dtype = np.dtype(dtype)
    if exact is None:
        exact = reference(name, x, axis=axis, temperature=temperature)
    bound = ULP_BOUND[dtype]
    if name == "logsumexp":
        top = np.max(np.asarray(x, dtype=np.float64), axis=axis, keepdims=True)
        top = np.squeeze(np.abs(top / np.asarray(temperature)), axis=axis)
        u = np.finfo(dtype).eps / 2
        with np.errstate(over="ignore"):
            spacing = np.spacing(np.abs(np.asarray(exact).astype(dtype))).astype(np.longdouble)
        allowed = 2 * spacing + 2 * u * top
        error = np.abs(np.asarray(got, dtype=np.longdouble) - np.asarray(exact))
        assert np.all(error <= allowed), f"logsumexp error {error.max()} > {allowed.min()}"
        return
    finite = ~np.isinf(np.asarray(exact, dtype=np.float64)) | (np.asarray(got) != exact)
    error = ulp_error(got, exact, dtype)
    worst = float(np.max(error[finite])) if finite.any() else 0.0
    assert worst <= bound, f"{name} {dtype}: {worst:.2f} ulp > {bound}"


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- accuracy ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length", [1, 3, 7, 64, 1001, 20000, 140001])
def test_random_rows_within_ulp_bounds(name, dtype, length):
    generator = rng(length)
    rows = 3 if length < 20000 else 2
    x = (generator.standard_normal((rows, length)) * generator.choice([1, 10, 300])).astype(dtype)
    got = kernel_call(name, x)
    assert got.dtype == dtype
    assert_accurate(name, got, x, dtype)


ADVERSARIAL = [
    ([700.0, -5e-14], np.float64),
    ([80.0, -3e-6], np.float32),
    ([0.0, -40.0], np.float64),
    ([0.0, -40.0], np.float32),
    ([1e30, -1e30, 1.0, 1e30], np.float64),
    ([np.finfo(np.float64).max, -np.finfo(np.float64).max, 0.0], np.float64),
    ([np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.0], np.float32),
    ([3.0, 3.0, 3.0, 1.0], np.float64),
    ([-745.0, 0.0, -744.0, -708.5, -1e-300], np.float64),
    ([1e-310, -1e-310, 5e-324, 0.0], np.float64),
    ([1e16, 1e16 + 2.0, -1e16], np.float64),
    ([88.0, -87.0, 1e-3, 20.0, -103.0], np.float32),
]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("values, dtype", ADVERSARIAL)
def test_adversarial_rows_against_mpmath(name, values, dtype):
    x = np.array(values, dtype=dtype)
    got = kernel_call(name, x)
    exact = reference_mp(name, x)
    assert_accurate(name, got, x, dtype, exact=exact)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("temperature", [0.3, 1e-3, 7.0, 1e5])
def test_temperature_compensated(name, temperature):
    x = np.array([700.0, -5e-14, 650.25, 1.0 / 3.0], dtype=np.float64)
    got = kernel_call(name, x, temperature=temperature)
    exact = reference_mp(name, x, temperature=temperature)
    assert_accurate(name, got, x, np.float64, temperature=temperature, exact=exact)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixed_magnitudes_and_ties(name, dtype):
    generator = rng(7)
    x = generator.choice([-1e3, -30.0, -1.0, 0.0, 1e-7, 5.0, 5.0], size=(5, 3000)).astype(dtype)
    x = x * generator.choice([1.0, 1.0 + 1e-6], size=x.shape).astype(dtype)
    assert_accurate(name, kernel_call(name, x), x, dtype)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_of_a_million(name, dtype):
    x = (rng(3).standard_normal(1_000_000) * 20).astype(dtype)
    assert_accurate(name, kernel_call(name, x), x, dtype)


def test_log_softmax_near_zero_uses_log1p():
    assert kernel_call("log_softmax", np.array([0.0, -40.0]))[0] == pytest.approx(
        -4.248354255291589e-18, rel=1e-15
    )
    assert kernel_call("logsumexp", np.array([0.0, -40.0])) == pytest.approx(
        4.248354255291589e-18, rel=1e-15
    )


# ---- the kernel against the generic path ----

EDGE_ROWS = [
    [-INF, -INF, -INF],
    [0.0, -INF, 2.0],
    [INF, 1.0, -INF],
    [INF, INF, 3.0],
    [1.0, math.nan, 2.0],
    [math.nan, INF, -INF],
    [5.0, 5.0, -1.0],
    [-3.0, -3.0, -7.0],
    [0.0, 0.0, -1.0],
    [1e308, -1e308, 1e308],
]


def assert_same(got, expected, dtype):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    same = (got == expected) | (np.isnan(got) & np.isnan(expected))
    finite = np.isfinite(expected)
    scale = np.max(np.abs(expected[finite])) if finite.any() else 0.0
    eps = np.finfo(dtype).eps
    close = np.isclose(got, expected, rtol=8 * eps, atol=4 * eps * scale)
    assert np.all(same | close), f"{got} != {expected}"


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
@pytest.mark.parametrize(
    "temperature", [1.0, 0.0, INF, 0.5, np.array([[1.0], [0.0], [INF], [2.0]] * 3)[:10]]
)
def test_edge_rows_match_generic(name, dtype, temperature):
    if dtype == "bfloat16":
        if BFLOAT16 is None:
            pytest.skip("ml_dtypes is not installed")
        dtype = BFLOAT16
    with np.errstate(over="ignore"):  # 1e308 becomes inf in the narrower dtypes
        x = np.array(EDGE_ROWS, dtype=np.float64).astype(dtype)
    got = kernel_call(name, x, temperature=temperature)
    # The generic path computes max / temperature, which overflows for 1e308 / 0.5.
    with np.errstate(over="ignore"):
        expected = generic_call(name, x, temperature=temperature)
    assert got.dtype == expected.dtype == x.dtype
    assert_same(got, expected, np.float32 if np.dtype(dtype).itemsize == 2 else dtype)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_where_matches_generic(name):
    generator = rng(11)
    x = generator.standard_normal((6, 9))
    where = generator.random((6, 9)) < 0.6
    where[2] = False
    where[3, :] = False
    where[3, 4] = True
    got = kernel_call(name, x, where=where)
    expected = generic_call(name, x, where=where)
    assert_same(got, expected, np.float64)
    assert_same(
        kernel_call(name, x, axis=0, where=where),
        generic_call(name, x, axis=0, where=where),
        np.float64,
    )
    tall = generator.standard_normal((50, 40)).astype(np.float32)
    tall_where = generator.random((50, 40)) < 0.5
    assert_same(
        kernel_call(name, tall, axis=0, where=tall_where),
        generic_call(name, tall, axis=0, where=tall_where),
        np.float32,
    )
    row_mask = np.array([True, False, True, True, False, True, True, True, True])
    assert_same(
        kernel_call(name, x, where=row_mask), generic_call(name, x, where=row_mask), np.float64
    )


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_half_precision_rows(name, dtype):
    if dtype == "bfloat16":
        if BFLOAT16 is None:
            pytest.skip("ml_dtypes is not installed")
        dtype = BFLOAT16
    x = (rng(5).standard_normal((4, 500)) * 4).astype(dtype)
    got = kernel_call(name, x)
    expected = reference(name, x.astype(np.float64)).astype(np.float64)
    assert got.dtype == x.dtype
    # One rounding to the half format, from a result accurate in float32.
    eps = 2.0**-7 if dtype == BFLOAT16 else float(np.finfo(dtype).eps)
    tiny = 1e-40 if dtype == BFLOAT16 else 6e-8  # the smallest subnormal, about
    tolerance = np.abs(expected).astype(np.float64) * 2.0 * eps + tiny
    assert np.all(np.abs(got.astype(np.float64) - expected) <= tolerance)
    zeros = np.zeros(128256, dtype=dtype)
    if name == "softmax":
        assert float(kernel_call(name, zeros)[0]) == pytest.approx(1 / 128256, rel=1e-2)
    elif name == "log_softmax":
        assert float(kernel_call(name, zeros)[0]) == pytest.approx(-11.76, abs=0.05)


# ---- layouts ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_axis_and_stride(name, dtype):
    generator = rng(2)
    base = (generator.standard_normal((6, 37, 20)) * 5).astype(dtype)
    views = [
        base,
        base[:, ::2, :],
        base[::-1, ::-3, ::2],
        np.asfortranarray(base),
        base.transpose(2, 0, 1),
    ]
    for view in views:
        for axis in (0, 1, 2, -1):
            got = kernel_call(name, view, axis=axis)
            expected = generic_call(name, view, axis=axis)
            assert_same(got, expected, dtype)
            assert_accurate(name, got, view, dtype, axis=axis)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(50, 33), (17, 4), (300, 2), (5000, 3)])
def test_axis_zero_of_a_matrix(name, dtype, shape):
    x = (rng(4).standard_normal(shape) * 30).astype(dtype)
    x[3, 1] = INF
    x[:, 0] = -INF
    got = kernel_call(name, x, axis=0)
    assert_same(got, generic_call(name, x, axis=0), dtype)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_axis_none_and_keepdims(name):
    x = rng(8).standard_normal((4, 5, 6))
    assert_same(kernel_call(name, x, axis=None), generic_call(name, x, axis=None), np.float64)
    if name == "logsumexp":
        got = kernel_call(name, x, axis=1, keepdims=True)
        assert got.shape == (4, 1, 6)
        assert_same(got, generic_call(name, x, axis=1, keepdims=True), np.float64)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_per_row_temperature_on_axis_zero(name):
    x = rng(9).standard_normal((40, 7))
    temperature = np.array([[0.5, 0.0, INF, 2.0, 1.0, 1e-3, 3.0]])
    got = kernel_call(name, x, axis=0, temperature=temperature)
    assert_same(got, generic_call(name, x, axis=0, temperature=temperature), np.float64)


@pytest.mark.parametrize("axis", [(0, 5), (1, 1), (0, 1.0), 2, -3])
def test_invalid_axes_raise_on_the_generic_path(axis):
    x = np.zeros((2, 3))
    with pytest.raises((ValueError, TypeError, IndexError)):
        smk.softmax(x, axis=axis)


def test_read_only_and_integer_input():
    x = rng(1).standard_normal((3, 10))
    x.setflags(write=False)
    assert_same(kernel_call("softmax", x), generic_call("softmax", x), np.float64)
    ints = np.array([[-100, 100, 3]], dtype=np.int8)
    got = kernel_call("softmax", ints)
    assert got.dtype == np.float64
    assert_same(got, generic_call("softmax", ints), np.float64)


# ---- out= ----


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_and_in_place(name, dtype):
    x = (rng(12).standard_normal((20, 300)) * 3).astype(dtype)
    expected = generic_call(name, x)
    out = np.empty_like(x)
    assert kernel_call(name, x, out=out) is out
    assert_same(out, expected, dtype)
    strided = np.empty((20, 600), dtype=dtype)[:, ::2]
    kernel_call(name, x, out=strided)
    assert_same(strided, expected, dtype)
    inplace = x.copy()
    assert kernel_call(name, inplace, out=inplace) is inplace
    assert_same(inplace, expected, dtype)
    column = x.copy()
    kernel_call(name, column, axis=0, out=column)
    assert_same(column, generic_call(name, x, axis=0), dtype)
    long_row = (rng(13).standard_normal(300_000) * 3).astype(dtype)
    expected_long = generic_call(name, long_row)
    kernel_call(name, long_row, out=long_row)
    assert_same(long_row, expected_long, dtype)


def test_out_overlapping_view():
    x = rng(14).standard_normal(101)
    expected = generic_call("softmax", x[1:])
    kernel_call("softmax", x[1:], out=x[:-1])
    assert_same(x[:-1], expected, np.float64)


def test_out_generic_path_and_errors():
    x = rng(15).standard_normal((2, 5))
    out = np.empty_like(x)
    with _kernels.generic_only():
        assert smk.softmax(x, out=out) is out
        result = smk.logsumexp(x, out=np.empty(2))
    assert_same(out, smk.softmax(x), np.float64)
    assert_same(result, smk.logsumexp(x), np.float64)
    with pytest.raises(ValueError, match="shape"):
        smk.softmax(x, out=np.empty((5, 2)))
    with pytest.raises(TypeError, match="dtype"):
        smk.softmax(x, out=np.empty((2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="NumPy array"):
        smk.softmax(x, out=[0.0] * 10)
    array_api_strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="out= is only supported for NumPy"):
        smk.softmax(array_api_strict.asarray([1.0, 2.0]), out=np.empty(2))


# ---- paths, threads, instruction sets ----


def test_dispatch_takes_the_expected_path():
    x = np.array([1.0, 2.0])
    before = dict(_dispatch.counts)
    smk.softmax(x)
    smk.softmax([1.0, 2.0])  # a list takes the path of its array
    smk.logsumexp(x, b=np.array([1.0, 2.0]))
    smk.logsumexp(x, return_sign=True)
    smk.softmax(x, axis=(0,))
    counts = _dispatch.counts
    assert counts["kernel"] - before.get("kernel", 0) == 3
    assert counts["generic"] - before.get("generic", 0) == 2
    np.testing.assert_array_equal(
        smk.softmax([0.3, 1.7, -2.0]), smk.softmax(np.array([0.3, 1.7, -2.0]))
    )


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("shape", [(64, 5000), (1, 300_000), (3, 300_000), (4000, 50)])
def test_threads_give_the_same_result(name, shape):
    x = (rng(16).standard_normal(shape) * 10).astype(np.float32)
    with smk.num_threads(1):
        single = kernel_call(name, x)
    with smk.num_threads(4):
        several = kernel_call(name, x)
    # Splitting a row between threads only changes the order of a float64 sum.
    assert_same(several, single, np.float32)
    x64 = x.astype(np.float64)
    with smk.num_threads(3):
        assert_accurate(name, kernel_call(name, x64), x64, np.float64)


def test_thread_setting():
    previous = smk.get_num_threads()
    with smk.num_threads(2):
        assert smk.get_num_threads() == 2
    assert smk.get_num_threads() == previous
    with pytest.raises(ValueError, match="n must be >= 1"):
        smk.set_num_threads(0)


def test_baseline_instruction_set_in_a_subprocess(tmp_path):
    x = (rng(17).standard_normal((7, 3001)) * 50).astype(np.float64)
    x[1, 5] = INF
    x[2, :] = -INF
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import softmaxkit as smk
        from softmaxkit import _dispatch, _kernels
        assert _kernels.simd() == "baseline", _kernels.simd()
        x = np.load(sys.argv[1])
        for i, f in enumerate([smk.softmax, smk.log_softmax, smk.logsumexp]):
            np.save(sys.argv[2] + f"/{i}.npy", f(x, temperature=0.7))
            np.save(sys.argv[2] + f"/{i}f.npy", f(x.astype(np.float32), axis=0))
        assert _dispatch.counts["kernel"] == 6
        """
    )
    env = dict(os.environ, SOFTMAXKIT_SIMD="baseline")
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path)],
        check=True,
        env=env,
    )
    for i, name in enumerate(FUNCTIONS):
        got = np.load(tmp_path / f"{i}.npy")
        assert_same(got, generic_call(name, x, temperature=0.7), np.float64)
        got32 = np.load(tmp_path / f"{i}f.npy")
        assert_same(got32, generic_call(name, x.astype(np.float32), axis=0), np.float32)


def test_no_warning_on_extreme_input():
    x = np.array([[1e308, -1e308, np.nan], [-INF, -INF, -INF], [INF, -INF, 0.0]])
    for name in FUNCTIONS:
        for temperature in (0.0, 1e-300, 1.0, INF):
            kernel_call(name, x, temperature=temperature)


# ---- the float32 path that evaluates exp on 8 float lanes ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("length", [8, 15, 16, 41])
def test_float32_far_entries_and_tails(name, in_place, length):
    # x - max below -87 leaves the 8-lane exp (2^n would be subnormal): such entries,
    # the last length % 8, -inf entries and ties must all keep the bound, also when
    # the output is the input (the stored exp cannot then be taken back to x).
    generator = rng(length)
    x = generator.uniform(-110.0, 0.0, (6, length)).astype(np.float32)
    x[1, ::3] = -np.inf
    x[2, : length // 2] = 0.0
    x[3] = generator.uniform(-90.0, -80.0, length).astype(np.float32)
    x[3, 0] = 0.0
    x[4] *= np.float32(1e-3)
    x[5, 1:] = np.float32(-95.0)
    expected_input = x.copy()
    if name == "logsumexp":
        got = kernel_call(name, x)
    elif in_place:
        got = kernel_call(name, x, out=x)
    else:
        got = kernel_call(name, x, out=np.empty_like(x))
    assert_accurate(name, got, expected_input, np.float32)


def test_float32_random_sweep_within_ulp_bounds():
    # Many scales and offsets, so that x - max, 2^n and the sums cover their ranges.
    generator = rng(2024)
    for scale in (1e-3, 1.0, 10.0, 40.0, 300.0):
        for offset in (0.0, 80.0, -1e4):
            x = (generator.standard_normal((8, 203)) * scale + offset).astype(np.float32)
            for name in FUNCTIONS:
                assert_accurate(name, kernel_call(name, x), x, np.float32)


# ---- softmax with the row statistics (for the losses) ----


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 13.0])
@pytest.mark.parametrize("shape", [(40, 7), (9, 5000), (3, 300_000)])
def test_softmax_stats_against_long_double(dtype, temperature, shape):
    x = (rng(3).standard_normal(shape) * 6).astype(dtype)
    x[0, 1] = x[0].max() + 30  # a confident row: log-normalizer ~ 1e-13
    gain = np.linspace(0.25, 2.0, shape[0])
    out = np.empty_like(x)
    stats = _kernels.softmax_stats(x, out, temperature=temperature, gain=gain)
    exact = reference("softmax", x, temperature=temperature) * gain[:, None]
    # The kernel's softmax bound, with one more ulp for the gain.
    assert ulp_error(out, exact, dtype).max() <= ULP_BOUND[np.dtype(dtype)] + 1
    np.testing.assert_array_equal(stats[:, 0], x.max(axis=1).astype(np.float64))
    # The log-normalizer itself (log1p form, long double), to a few ulp of double, or
    # to the float32 path's 1e-8 (its exp terms are exact to about 1e-8, a sixth of a
    # float32 ulp, before rounding).
    xl = x.astype(np.longdouble)
    shifted = (xl - xl.max(axis=1, keepdims=True)) / np.longdouble(temperature)
    is_top = shifted == 0
    exact_log_total = np.log1p(
        (is_top.sum(axis=1) - 1) + np.where(is_top, 0, np.exp(shifted)).sum(axis=1)
    )
    tolerance = 4e-16 if dtype == np.float64 else 2e-8
    error = np.abs(stats[:, 1] - exact_log_total) / np.abs(exact_log_total)
    assert error.max() <= tolerance, error.max()


def test_softmax_stats_edge_rows_and_overlap():
    x = np.array(
        [[0.0, 1.0, 2.0], [-INF, -INF, -INF], [1.0, np.nan, 0.0], [INF, 0.0, INF], [5.0, -INF, 5.0]]
    )
    gain = np.array([2.0, 3.0, 4.0, 5.0, 0.5])
    out = np.empty_like(x)
    stats = _kernels.softmax_stats(x, out, gain=gain)
    expected = generic_call("softmax", x) * gain[:, None]
    np.testing.assert_allclose(out, expected, rtol=4e-16, atol=0)
    np.testing.assert_array_equal(stats[:, 0], [2.0, -INF, np.nan, INF, 5.0])
    assert np.isnan(stats[1:4, 1]).all()
    assert stats[4, 1] == math.log(2.0)
    assert abs(stats[0, 1] - math.log1p(math.exp(-1) + math.exp(-2))) < 1e-15
    # An output overlapping the input (shifted by one entry) is computed aside first.
    buffer = np.concatenate([x.ravel(), [0.0]])
    source = buffer[:-1].reshape(x.shape)
    target = buffer[1:].reshape(x.shape)
    _kernels.softmax_stats(source, target, gain=gain)
    np.testing.assert_array_equal(target, out)


# ---- sixteen float32 rows side by side (short rows, and reductions over axis 0) ----


LANE_CASES = [
    (name, layout)
    for name in FUNCTIONS
    for layout in ["short rows", "axis 0", "axis 0 in place"]
    if not (name == "logsumexp" and layout == "axis 0 in place")
]


@pytest.mark.parametrize("name, layout", LANE_CASES)
@pytest.mark.parametrize("temperature", [1.0, 0.37])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_side_by_side_against_long_double(name, temperature, layout, dtype):
    x = (rng(7).standard_normal((70, 11)) * 4).astype(dtype)
    x[5, 2] = x[5].max() - 200  # an entry whose exp leaves float32's normal range
    x[6] = 3.0  # ties at the maximum
    x[40, 4] = x[40].max() + 30  # a confident row
    axis = -1 if layout == "short rows" else 0
    data = x if axis == -1 else np.ascontiguousarray(x.T)
    options = dict(axis=axis, temperature=temperature)
    if layout == "axis 0 in place":
        got = kernel_call(name, data, out=data, **options)
        assert got is data
    else:
        got = kernel_call(name, data, **options)
    assert_accurate(name, got, x if axis == -1 else x.T, dtype, axis=axis,
                    temperature=temperature)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_side_by_side_edge_rows_match_generic(name, axis, dtype):
    x = rng(8).standard_normal((48, 9)).astype(dtype)
    tolerance = 3 * np.finfo(dtype).eps
    tiny = np.finfo(dtype).smallest_subnormal
    x[3, 1] = np.nan
    x[17] = -INF
    x[18, 0] = INF
    x[19, :4] = -INF
    data = x if axis == -1 else np.ascontiguousarray(x.T)
    got = kernel_call(name, data, axis=axis)
    expected = generic_call(name, data, axis=axis)
    if name == "logsumexp":
        np.testing.assert_allclose(got, expected, rtol=tolerance)
    else:
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tiny)
    # Rows of different temperatures side by side.
    shape = (48, 1) if axis == -1 else (1, 48)
    temperature = np.linspace(0.5, 2.0, 48, dtype=np.float32).reshape(shape)
    got = kernel_call(name, data, axis=axis, temperature=temperature)
    expected = generic_call(name, data, axis=axis, temperature=temperature)
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tiny)


def test_softmax_stats_of_short_rows():
    x = (rng(9).standard_normal((50, 6)) * 3).astype(np.float32)
    x[10, 2] = -INF
    gain = np.linspace(0.5, 1.5, 50)
    out = np.empty_like(x)
    stats = _kernels.softmax_stats(x, out, gain=gain)
    exact = reference("softmax", x) * gain[:, None]
    assert ulp_error(out, exact, np.float32).max() <= 3
    exact_lse = reference("logsumexp", x)
    np.testing.assert_allclose(stats[:, 0] + stats[:, 1], exact_lse.astype(np.float64), rtol=1e-9)


# ---- the sums of exp by blocks (for sampling) ----


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 7, 512, 5000])
def test_block_sums_against_long_double(dtype, block):
    x = (rng(11).standard_normal((6, 3001)) * 5).astype(dtype)
    x[2, 5] = -INF
    x[3] = x[3] - 300  # far entries and a shifted maximum
    temperature = np.array([0.5, 1.0, 2.0, 1.0, 0.9, 3.0])
    where = rng(12).random((6, 3001)) < 0.8
    where[:, 0] = True
    stats, sums = _kernels.block_sums(x, block, temperature=temperature, where=where)
    xl = np.where(where, x.astype(np.longdouble), -np.inf)
    top = xl.max(axis=1, keepdims=True)
    terms = np.exp((xl - top) / temperature[:, None].astype(np.longdouble))
    starts = np.arange(0, 3001, block)
    exact = np.add.reduceat(terms, starts, axis=1)
    np.testing.assert_array_equal(stats[:, 0], top[:, 0].astype(np.float64))
    tolerance = 1e-15 if dtype == np.float64 else 2e-8
    scale = exact.sum(axis=1, keepdims=True)  # errors relative to the row's total
    assert (np.abs(sums - exact) / scale).max() <= tolerance
    log_total = np.log(exact.sum(axis=1))
    assert (np.abs(stats[:, 1] - log_total) <= tolerance * np.maximum(1, log_total)).all()


def test_block_sums_of_rows_that_are_not_finite():
    x = np.array([[0.0, 1.0, 2.0], [-INF, -INF, -INF], [1.0, np.nan, 0.0], [INF, 0.0, 1.0]])
    stats, sums = _kernels.block_sums(x, 2)
    assert sums.shape == (4, 2)
    np.testing.assert_allclose(sums[0], [math.exp(-2) + math.exp(-1), 1.0], rtol=1e-15)
    assert np.isnan(sums[1:]).all() and np.isnan(stats[1:, 1]).all()
    assert _kernels.block_sums(x, 0) is NotImplemented


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("temperature", [0.3, 1e-3, 7.0, 1e5, "per row"])
def test_float32_rows_with_a_temperature_within_ulp_bounds(name, temperature):
    # The 8-lane float32 path forms (x - max) / T in double and splits it into float32
    # d + c: the same bounds as at T = 1.
    x = (rng(13).standard_normal((6, 20_001)) * 8).astype(np.float32)
    x[1, :50] = x[1].max()  # ties at the maximum
    x[2, 7] = x[2].max() + 40  # a confident row
    x[3, 3] = np.float32(80.0)
    x[3, 4] = np.float32(-3e-6)
    if temperature == "per row":
        temperature = np.array([[0.2], [1.0], [3.0], [0.05], [11.0], [1e3]])
    got = kernel_call(name, x, temperature=temperature)
    assert_accurate(name, got, x, np.float32, temperature=temperature)


# ---- the log-normalizers of rows side by side (log1p on four lanes) ----


@pytest.mark.parametrize("length", [2, 9, 64])
@pytest.mark.parametrize("layout", ["short rows", "axis 0"])
def test_log_normalizer_of_rows_side_by_side(length, layout):
    # Rows whose maximum is 0, so that logsumexp is the log-normalizer alone,
    # log1p((count - 1) + sum): their spread (from 1e-9 to 300) takes the argument of
    # log1p from 0 and tiny values across every binade up to length - 1.
    generator = rng(30 + length)
    rows = 4096
    spread = np.logspace(-9, 2.5, rows)[:, None]
    x = generator.standard_normal((rows, length)) * spread
    x[::7, : length // 2] = 0.0  # ties at the maximum
    x -= x.max(axis=1, keepdims=True)
    data = x if layout == "short rows" else np.ascontiguousarray(x.T)
    axis = -1 if layout == "short rows" else 0
    got = kernel_call("logsumexp", data, axis=axis)
    xl = x.astype(np.longdouble)
    is_top = xl == 0
    argument = (is_top.sum(axis=1) - 1) + np.where(is_top, 0, np.exp(xl)).sum(axis=1)
    exact = np.log1p(argument)
    # The rounding of the argument to float64 alone costs up to half an ulp.
    assert ulp_error(got, exact, np.float64).max() <= 2
    # A mask takes the rows one by one, to the C library's log1p.
    one_by_one = kernel_call("logsumexp", data, axis=axis, where=np.ones(data.shape, bool))
    assert ulp_error(got, one_by_one, np.float64).max() <= 1
    assert_accurate("log_softmax", kernel_call("log_softmax", data, axis=axis),
                    x.T if axis == 0 else x, np.float64, axis=axis)


# ---- the extension's entries for the common call ----


class _Subclass(np.ndarray):
    pass


def test_fast_entries_take_the_common_call_only():
    x = rng(40).standard_normal((5, 7))
    common = [
        (x, -1, 1.0),
        (x.astype(np.float32), 1, 2),
        (x.astype(np.float16), -1, 0.5),
        (x[:, ::2], -1, 0.0),
    ]
    for data, axis, temperature in common:
        got = _kernels.fast_normalize(0, data, axis, temperature, None, None, None)
        assert got is not NotImplemented
        np.testing.assert_allclose(got, generic_call("softmax", data, axis=axis,
                                                     temperature=temperature), rtol=2e-3)
        got = _kernels.fast_reduce(data, axis, temperature, None, None, False, None)
        assert got is not NotImplemented and got.shape == data.shape[:-1]
    declined = [
        dict(x=x.tolist()),
        dict(x=x.view(_Subclass)),
        dict(x=x.astype(">f8")),
        dict(x=x.astype(np.int64)),
        dict(x=np.float64(1.0)),
        dict(x=np.empty((3, 0))),
        dict(axis=0),
        dict(axis=(1,)),
        dict(axis=True),
        dict(temperature=True),
        dict(temperature=np.float64(2.0)),
        dict(temperature=-1.0),
        dict(temperature=math.nan),
        dict(temperature=10**400),
        dict(where=np.ones((5, 7), bool)),
        dict(dtype=np.float64),
    ]
    for case in declined:
        options = dict(x=x, axis=-1, temperature=1.0, where=None, dtype=None) | case
        args = [options[k] for k in ("x", "axis", "temperature", "where", "dtype")]
        assert _kernels.fast_normalize(0, *args, None) is NotImplemented, case
        assert _kernels.fast_reduce(*args, False, None) is NotImplemented, case
    # out= that is not a plain array, or overlaps x without being x, goes on to the
    # general dispatch (which raises or computes aside).
    assert _kernels.fast_normalize(1, x, -1, 1.0, None, None, np.empty((5, 7)).view(
        _Subclass)) is NotImplemented
    big = rng(41).standard_normal(12)
    assert _kernels.fast_normalize(0, big[:8], -1, 1.0, None, None, big[4:]) is NotImplemented
    expected = generic_call("softmax", big[:8])
    np.testing.assert_allclose(smk.softmax(big[:8], out=big[4:]), expected, rtol=1e-15)
    assert _kernels.fast_reduce(x, -1, 1.0, None, None, False, np.empty(5)) is NotImplemented
    with _kernels.generic_only():
        assert _kernels.fast_normalize(0, x, -1, 1.0, None, None, None) is NotImplemented
        assert _kernels.fast_reduce(x, -1, 1.0, None, None, True, None) is NotImplemented


def test_fast_entries_follow_the_thread_setting_and_keepdims():
    x = (rng(42).standard_normal((8, 40000)) * 3).astype(np.float32)
    with smk.num_threads(1):
        single = _kernels.fast_normalize(0, x, -1, 1.0, None, None, None)
        lse_single = _kernels.fast_reduce(x, -1, 1.0, None, None, True, None)
    with smk.num_threads(3):
        several = _kernels.fast_normalize(0, x, -1, 1.0, None, None, None)
        lse_several = _kernels.fast_reduce(x, -1, 1.0, None, None, True, None)
    assert_same(several, single, np.float32)
    assert lse_single.shape == (8, 1)
    assert_same(lse_several, lse_single, np.float32)
    assert_accurate("logsumexp", lse_single[:, 0], x, np.float32)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        smk.logsumexp(x, temperature=-2.0)


@pytest.mark.parametrize("temperature", [1.0, 0.9])
def test_float32_results_near_the_smallest_normal_number(temperature):
    # Rows whose entries are all within 86 of the maximum, with sums large enough that
    # the smallest probabilities fall around 2^-126 and below (subnormal results).
    generator = rng(50)
    rows, length = 64, 3000
    x = np.zeros((rows, length), dtype=np.float32)
    depth = np.linspace(-86.0, -70.0, rows, dtype=np.float32)[:, None] * temperature
    x[:, : length // 2] = depth + generator.random((rows, length // 2), dtype=np.float32)
    x[:, length // 2 :] = generator.random((rows, length - length // 2), dtype=np.float32)
    got = kernel_call("softmax", x, temperature=temperature)
    exact = reference("softmax", x, temperature=temperature)
    assert (exact < 2.0**-126).any() and (exact > 2.0**-126).any()
    assert ulp_error(got, exact, np.float32).max() <= ULP_BOUND[np.dtype(np.float32)]


# ---- float32 reductions over a long axis 0, streamed by matrix rows ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("temperature", [1.0, 0.37])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_axis_zero_against_long_double(name, temperature, threads, dtype):
    # 603 columns: blocks of one per thread (multiples of 64), and a last group of
    # columns that is not a multiple of 8.
    # (Every entry within 86 / T of its column's maximum: the streamed path's rows.)
    x = (rng(60).standard_normal((300, 603)) * 2).astype(dtype)
    x[:, 7] = 2.5  # ties at the maximum
    x[100, 8] = x[:, 8].max() + 10  # a confident column
    before = _kernels._kernel.streamed_blocks()
    with smk.num_threads(threads):
        got = kernel_call(name, x, axis=0, temperature=temperature)
    assert _kernels._kernel.streamed_blocks() - before == min(threads, 603 // 64)
    assert_accurate(name, got, x, dtype, axis=0, temperature=temperature)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_axis_zero_edge_columns_and_in_place(name, dtype):
    x = (rng(61).standard_normal((200, 520)) * 3).astype(dtype)
    plain = x.copy()
    x[5, 3] = np.nan
    x[:, 200] = -INF
    x[9, 300] = INF
    far = 150 if dtype == np.float32 else 800  # beyond the path's 86 or 700
    x[4, 400] = x[:, 400].max() - far  # an entry far below its column's maximum
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).smallest_subnormal
    for data in (x, plain):
        expected = generic_call(name, data, axis=0)
        before = _kernels._kernel.streamed_blocks()
        with smk.num_threads(1):
            got = kernel_call(name, data, axis=0)
        # One block of 512 columns: streamed unless a column is not for that path.
        assert _kernels._kernel.streamed_blocks() - before == (data is plain)
        # Both within their bounds of the exact values (4 ulp in float64).
        np.testing.assert_allclose(got, expected, rtol=8 * eps, atol=tiny)
        if data is plain:
            assert_accurate(name, got, data, dtype, axis=0)
        if name != "logsumexp":
            inplace = data.copy()
            assert kernel_call(name, inplace, axis=0, out=inplace) is inplace
            np.testing.assert_array_equal(inplace, got)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_generic_path_within_bounds_over_axis_zero(name):
    # NumPy adds one entry at a time over a non-contiguous axis (an error that grows
    # with the length); the generic path sums a contiguous copy pairwise instead.
    x = rng(62).standard_normal((3000, 40)) * 3
    got = generic_call(name, x, axis=0)
    assert_accurate(name, got, x, np.float64, axis=0)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("length", [65, 66, 67, 130, 4099])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_float64_rows_read_in_place_with_every_tail(name, length, temperature):
    # Rows longer than the short-row path, whose last length % 4 entries go through a
    # padded vector; one row has an entry far below its maximum (the buffer path).
    x = rng(70 + length).standard_normal((9, length)) * 20
    x[4, 3] = x[4].max() - 900
    x[5, :] = 1.5  # all at the maximum
    got = kernel_call(name, x, temperature=temperature)
    assert_accurate(name, got, x, np.float64, temperature=temperature)
