"""The compiled kernel at the edges of its arguments: extreme temperatures on every
path, many dimensions, the thread setting, misaligned arrays, bad arguments to the
private entries, and a wrong ``out=``. Also run by ``make test-asan`` (AddressSanitizer
and UndefinedBehaviorSanitizer), where a read or write outside an array aborts."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import mpmath
import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _dispatch, _kernels, _threads

pytestmark = pytest.mark.skipif(
    not _kernels.kernel_available(), reason="the compiled kernels are not built"
)

FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}
NAMES = list(FUNCTIONS)

try:
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - optional dependency
    BFLOAT16 = None

# (significand bits, smallest normal exponent) of each dtype, for its ulp.
FORMATS = {"float16": (10, -14), "bfloat16": (7, -126), "float32": (23, -126),
           "float64": (52, -1022)}
# Results within 2 ulp (float32) and 4 ulp (float64); the half formats are rounded
# once from a float32-accurate value (half an ulp, and a little).
ULP_BOUND = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 4}
DTYPES = ["float32", "float64", "float16", "bfloat16"]


def as_dtype(name):
    if name == "bfloat16":
        if BFLOAT16 is None:
            pytest.skip("ml_dtypes is not installed")
        return BFLOAT16
    return np.dtype(name)


def kernel_call(name, x, **options):
    """Call ``name`` and check that the kernel ran."""
    before = _dispatch.counts["kernel"]
    result = FUNCTIONS[name](x, **options)
    assert _dispatch.counts["kernel"] == before + 1, "the kernel did not run"
    return result


def generic_call(name, x, **options):
    with _kernels.generic_only(), np.errstate(all="ignore"):
        return FUNCTIONS[name](x, **options)


# ---- the reference: mpmath, the exact values as float64 pairs hi + lo ----


def exact_rows(rows, temperature, keep=None):
    """softmax, log_softmax (float64 pairs, shape of rows) and logsumexp (pairs per row)
    of finite rows, in mpmath at 300 bits; entries where keep is False take no part."""
    rows = np.asarray(rows, dtype=np.float64)
    keep = np.ones(rows.shape, bool) if keep is None else keep
    out = {name: (np.zeros(rows.shape), np.zeros(rows.shape)) for name in NAMES[:2]}
    out["logsumexp"] = (np.zeros(len(rows)), np.zeros(len(rows)))
    out["max"] = np.zeros(len(rows))
    out["log_total"] = np.zeros(len(rows))

    def put(name, index, value):
        hi = float(value)
        out[name][0][index] = hi
        if math.isfinite(hi):
            out[name][1][index] = float(value - hi)

    with mpmath.workprec(300):
        t = mpmath.mpf(float(temperature))
        for i, row in enumerate(rows):
            values = [mpmath.mpf(float(v)) for v in row[keep[i]]]
            top = max(values)
            shifted = [(v - top) / t for v in values]
            total = mpmath.fsum(mpmath.exp(s) for s in shifted)
            log_total = mpmath.log(total)
            kept = np.flatnonzero(keep[i])
            for j in range(rows.shape[1]):
                if j not in kept:
                    put("softmax", (i, j), mpmath.mpf(0))
                    out["log_softmax"][0][i, j] = -math.inf
            for j, s in zip(kept, shifted, strict=True):
                put("softmax", (i, j), mpmath.exp(s) / total)
                put("log_softmax", (i, j), s - log_total)
            put("logsumexp", i, top / t + log_total)
            out["max"][i] = float(top)
            out["log_total"][i] = float(log_total)
    return out


def ulp_of(values, dtype_name):
    """The ulp of ``dtype_name`` at the float64 values (their value rounded to it)."""
    mantissa, lowest = FORMATS[dtype_name]
    _, exponent = np.frexp(np.abs(values))
    exponent = np.where(values == 0, lowest + 1, exponent)
    return np.ldexp(1.0, np.maximum(exponent - 1, lowest) - mantissa)


def assert_within_bounds(name, got, exact, dtype_name, top_over_t=None, context=""):
    """``got`` within the ulp bound of the exact pairs; where the exact value rounds to
    an infinity of the dtype, ``got`` is that infinity."""
    hi, lo = exact
    got = np.asarray(got).astype(np.float64)
    dtype = as_dtype(dtype_name)
    with np.errstate(over="ignore"):
        rounded = hi.astype(dtype).astype(np.float64)
    infinite = np.isinf(rounded)
    assert np.array_equal(got[infinite], rounded[infinite]), (name, context, got, hi)
    finite = ~infinite
    error = np.abs((got[finite] - hi[finite]) - lo[finite])
    allowed = ULP_BOUND[dtype_name] * ulp_of(hi[finite], dtype_name)
    if name == "logsumexp":  # the cancellation inherent to the problem: 2u |max / T|
        allowed = allowed + 2.0 ** -FORMATS[dtype_name][0] * np.abs(top_over_t[finite])
    assert np.all(error <= allowed), (name, context, dtype_name, got[finite], hi[finite])


# ---- a. extreme temperatures on every path ----

EXTREME_TEMPERATURES = [2.0**900, 1e300, 1.7e308, 2.0**-900, 1e-300, 5e-324]


def distinct_rows(length, seed):
    """Three rows: random, all equal (ties), random with two entries at the maximum."""
    generator = np.random.default_rng(seed)
    rows = np.empty((3, length))
    rows[0] = generator.standard_normal(length) * 3
    rows[1] = 2.0
    rows[2] = generator.standard_normal(length) * 3
    rows[2, 0] = rows[2, -1] = rows[2].max() + 1.0
    return rows


def layouts(rows, name):
    """(label, data, options, to_rows, which): data for each path, and how its result
    maps back to the distinct rows (to_rows(result) has one row per entry of which)."""
    length = rows.shape[1]
    for label, count in [("rows", 3), ("short rows side by side", 40)]:
        which = np.arange(count) % 3
        yield label, rows[which], {}, lambda r: r, which
    for label, count in [("axis 0", 40), ("axis 0, many columns", 300)]:
        which = np.arange(count) % 3
        data = np.ascontiguousarray(rows[which].T)
        yield label, data, {"axis": 0}, lambda r: r.T, which
    which = np.arange(3)
    strided = np.zeros((3, 2 * length), dtype=rows.dtype)
    strided[:, ::2] = rows
    yield "strided rows", strided[:, ::2], {}, lambda r: r, which
    yield "mask", rows, {"where": np.ones(rows.shape, bool)}, lambda r: r, which
    if name != "logsumexp":
        in_place = rows.copy()
        yield "in place", in_place, {"out": in_place}, lambda r: r, which


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("temperature", EXTREME_TEMPERATURES)
def test_extreme_temperatures_on_every_path_and_tail(dtype_name, temperature):
    # Rows of every length 1..17 (each tail of 4 and 8 lanes, and the 16-lane paths'
    # short rows), where the first pass of a path may see no padding but a later one
    # pads its last vector with -inf.
    dtype = as_dtype(dtype_name)
    for length in range(1, 18):
        rows = distinct_rows(length, seed=length).astype(dtype)
        exact = exact_rows(rows, temperature)
        with np.errstate(over="ignore"):
            top_over_t = exact["max"] / temperature
        for name in NAMES:
            for label, data, options, to_rows, which in layouts(rows, name):
                got = kernel_call(name, data, temperature=temperature, **options)
                assert got.dtype == dtype
                got = to_rows(got)
                hi, lo = exact[name]
                assert_within_bounds(name, got, (hi[which], lo[which]), dtype_name,
                                     top_over_t[which], context=f"{label}, length {length}")


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("temperature", [2.0**900, 1e-300])
def test_extreme_temperatures_with_masked_entries(dtype_name, temperature):
    dtype = as_dtype(dtype_name)
    for length in range(2, 18):
        rows = distinct_rows(length, seed=100 + length).astype(dtype)
        keep = np.ones(rows.shape, bool)
        keep[:, 1] = False
        exact = exact_rows(rows, temperature, keep)
        for name in NAMES:
            got = kernel_call(name, rows, temperature=temperature, where=keep)
            with np.errstate(over="ignore"):
                top_over_t = exact["max"] / temperature
            assert_within_bounds(name, got, exact[name], dtype_name, top_over_t)


@pytest.mark.parametrize("temperature", [2.0**900, 1e-300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_temperatures_on_rows_split_between_threads(temperature, dtype):
    # Few rows longer than 2 * 131072 entries: each row's passes split between threads,
    # the last chunk of each share padded. Rows of ties have exact results 1 / n,
    # -log(n), max / T + log(n); on the random row at T = 2^900 every (x - max) / T is
    # below 2^-896 in magnitude, so the same values hold to far below an ulp.
    length = 2 * 131072 + 13
    rows = np.full((2, length), 2.0, dtype=dtype)
    if temperature > 1:
        rows[1] = np.random.default_rng(5).standard_normal(length) * 3
    with smk.num_threads(2):
        probabilities = kernel_call("softmax", rows, temperature=temperature)
        log_probabilities = kernel_call("log_softmax", rows, temperature=temperature)
        lse = kernel_call("logsumexp", rows, temperature=temperature)
    with mpmath.workprec(200):
        log_n = mpmath.log(length)
        expected_p = float(1 / mpmath.mpf(length))
        expected_lse = [float(mpmath.mpf(float(r.max())) / mpmath.mpf(temperature) + log_n)
                        for r in rows]
    name = np.dtype(dtype).name
    hi = np.full(rows.shape, expected_p)
    assert_within_bounds("softmax", probabilities, (hi, 0 * hi), name)
    assert_within_bounds("log_softmax", log_probabilities, (0 * hi - float(log_n), 0 * hi), name)
    hi_lse = np.array(expected_lse)
    assert_within_bounds("logsumexp", lse, (hi_lse, 0 * hi_lse), name, hi_lse - float(log_n))


def test_extreme_temperatures_reported_cases():
    # The audit's examples, against the generic path and the exact limits.
    got = smk.softmax(np.float32([1, 2, 3]), temperature=1e300)
    np.testing.assert_array_equal(got, np.full(3, np.float32(1 / 3)))
    np.testing.assert_array_equal(got, generic_call("softmax", np.float32([1, 2, 3]),
                                                    temperature=1e300))
    lse = smk.logsumexp(np.float32([2, 2, 2]), temperature=1e-300)
    assert lse == np.inf and lse.dtype == np.float32
    assert generic_call("logsumexp", np.float32([2, 2, 2]), temperature=1e-300) == np.inf
    np.testing.assert_allclose(smk.log_softmax(np.float32([1, 2, 3]), temperature=1e300),
                               np.full(3, -math.log(3)), rtol=2**-23)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [2.0**900, 1e-300])
def test_extreme_temperatures_in_softmax_stats(dtype, temperature):
    # The losses' entry: each row's softmax, maximum and log-normalizer.
    name = np.dtype(dtype).name
    for length in range(1, 18):
        rows = distinct_rows(length, seed=200 + length).astype(dtype)[np.arange(20) % 3]
        exact = exact_rows(rows, temperature)
        out = np.empty_like(rows)
        stats = _kernels.softmax_stats(rows, out, temperature=temperature)
        assert_within_bounds("softmax", out, exact["softmax"], name)
        np.testing.assert_array_equal(stats[:, 0], exact["max"])
        np.testing.assert_allclose(stats[:, 1], exact["log_total"], rtol=2**-50, atol=2**-1000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [2.0**900, 1e300, 1.0, 1e-300])
def test_block_sums_of_every_length_and_block(dtype, temperature):
    # The sampler's entry: blocks of 1..5 entries, whose last vectors are padded while
    # the first pass over the whole row may have had no padding.
    for length in range(1, 18):
        rows = distinct_rows(length, seed=300 + length).astype(dtype)
        with mpmath.workprec(300):
            t = mpmath.mpf(temperature)
            terms = [[mpmath.exp((mpmath.mpf(float(v)) - mpmath.mpf(float(r.max()))) / t)
                      for v in r] for r in rows]
        for block in range(1, 6):
            stats, sums = _kernels.block_sums(rows, block, temperature=temperature)
            starts = range(0, length, block)
            exact = np.array([[float(mpmath.fsum(row[s : s + block])) for s in starts]
                              for row in terms])
            total = exact.sum(axis=1, keepdims=True)
            tolerance = 2e-15 if dtype == np.float64 else 2e-8
            assert np.all(np.abs(sums - exact) <= tolerance * total), (length, block, sums)
            np.testing.assert_array_equal(stats[:, 0], rows.max(axis=1).astype(np.float64))
            np.testing.assert_allclose(stats[:, 1], np.log(total[:, 0]), rtol=tolerance,
                                       atol=tolerance)


def test_extreme_temperatures_through_the_losses_and_the_sampler():
    # cross_entropy (the losses' kernel entry) and sampling (block sums) take the same
    # rows: at T = 2^900 every class is equally likely.
    logits = np.float32([[1, 2, 3], [0.5, -1, 4]])
    loss = smk.cross_entropy(logits, np.array([0, 2]), temperature=2.0**900)
    assert loss == pytest.approx(math.log(3), rel=2**-22)
    policy = smk.SoftmaxPolicy(temperature=2.0**900)
    np.testing.assert_allclose(policy.probabilities(logits), np.full((2, 3), 1 / 3), rtol=2**-22)
    scores = np.float32([[0, 1, 2, 3, 4, 5, 6]] * 2000)
    draws = smk.sample(scores, temperature=2.0**900, rng=np.random.default_rng(1))
    counts = np.bincount(np.asarray(draws).ravel(), minlength=7)
    # Uniform over the seven: each count within 5 standard deviations of 2000 / 7.
    assert counts.sum() == 2000 and np.all(np.abs(counts - 2000 / 7) < 5 * math.sqrt(245))


# ---- f. more dimensions than the kernel takes ----


@pytest.mark.parametrize("name", NAMES)
def test_more_dimensions_than_the_kernel_takes(name):
    most = _kernels._kernel.MAX_NDIM
    try:
        np.empty((1,) * 40)
    except ValueError:  # NumPy 1.x arrays have at most 32 dimensions: nothing to decline
        pytest.skip("this NumPy has no arrays beyond the kernel's dimensions")
    expected = {"softmax": 0.2, "log_softmax": -math.log(5), "logsumexp": 1 + math.log(5)}[name]
    for ndim in (most, most + 1, 40):
        x = np.ones((1,) * (ndim - 1) + (5,))
        before = dict(_dispatch.counts)
        got = FUNCTIONS[name](x)
        took_kernel = _dispatch.counts["kernel"] - before["kernel"]
        assert took_kernel == (ndim <= most)
        assert got.shape == (x.shape if name != "logsumexp" else x.shape[:-1])
        np.testing.assert_allclose(got, expected, rtol=4 * 2**-52)
        # Several axes at once, and over axis 0, flattened or by the generic path.
        np.testing.assert_allclose(FUNCTIONS[name](x, axis=None), expected, rtol=4 * 2**-52)
        np.testing.assert_allclose(FUNCTIONS[name](x.reshape(x.shape[::-1]), axis=0), expected,
                                   rtol=4 * 2**-52)
    x = np.ones((1,) * most + (5,))
    assert _kernels.fast_normalize(0, x, -1, 1.0, None, None, None) is NotImplemented
    assert _kernels.fast_reduce(x, -1, 1.0, None, None, False, None) is NotImplemented
    with pytest.raises(ValueError, match="dimensions"):
        _kernels._kernel.run(0, x, 1, np.empty_like(x), 1, None, None, 1.0, None, 1)


# ---- g. the thread setting ----


def test_thread_setting_is_capped_at_the_kernels_maximum():
    assert _threads.MAX_THREADS == _kernels._kernel.MAX_THREADS == 256
    previous = smk.get_num_threads()
    for bad in (2**31, 257, 10**20, 0, -3):
        with pytest.raises(ValueError, match="n must be >= 1 and <= 256"):
            smk.set_num_threads(bad)
        with pytest.raises(ValueError, match="<= 256"):
            with smk.num_threads(bad):
                pass
        assert smk.get_num_threads() == previous
    with pytest.raises(TypeError, match="n must be an int"):
        smk.set_num_threads(2.0)
    x = np.random.default_rng(1).standard_normal((4, 40000)).astype(np.float32)
    with smk.num_threads(1):
        single = smk.softmax(x)
    with smk.num_threads(256):
        assert smk.get_num_threads() == 256
        several = smk.softmax(x)
        np.testing.assert_allclose(smk.logsumexp(x), np.log(np.exp(x.astype(np.float64)).sum(1)),
                                   rtol=1e-6)
        targets = np.zeros(4, dtype=np.int64)
        assert np.isfinite(smk.cross_entropy(x, targets))
    np.testing.assert_allclose(several, single, rtol=2**-22)


def import_with_threads(value):
    script = "import softmaxkit as smk; print(smk.get_num_threads())"
    env = dict(os.environ, SOFTMAXKIT_NUM_THREADS=value)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=False)


@pytest.mark.parametrize("value", ["99999999999999999999", "257", "0", "-1", "two", "1.5"])
def test_environment_thread_setting_out_of_range_is_reported_at_import(value):
    done = import_with_threads(value)
    assert done.returncode != 0
    message = f"ValueError: SOFTMAXKIT_NUM_THREADS must be an integer from 1 to 256, got {value!r}"
    assert message in done.stderr
    assert "OverflowError" not in done.stderr


@pytest.mark.parametrize("value, expected", [(" 3 ", "3"), ("256", "256"), ("1", "1")])
def test_environment_thread_setting_in_range(value, expected):
    done = import_with_threads(value)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


# ---- k. misaligned arrays ----


def misaligned(array):
    """A copy of ``array`` whose data starts one byte past an aligned address."""
    buffer = np.zeros(array.nbytes + 1, dtype=np.uint8)
    view = np.frombuffer(buffer.data, dtype=array.dtype, count=array.size, offset=1)
    view = view.reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned and view.flags.writeable
    return view


_EXACT_CACHE = {}


def exact_along(x, axis, temperature):
    """exact_rows of x along axis (-1 or 0 of a matrix), each x computed once."""
    x = np.asarray(x).astype(np.float64)
    key = (x.tobytes(), x.shape, axis, temperature)
    if key not in _EXACT_CACHE:
        _EXACT_CACHE[key] = exact_rows(x if axis == -1 else x.T, temperature)
    return _EXACT_CACHE[key]


def assert_close_to_reference(name, got, x, dtype_name, axis=-1, temperature=1.0):
    """got within the bounds of the exact results along axis (-1 or 0) of a matrix."""
    exact = exact_along(x, axis, temperature)
    got = np.asarray(got)
    if axis == 0 and name != "logsumexp":
        got = got.T
    assert_within_bounds(name, got, exact[name], dtype_name, exact["max"] / temperature)


MISALIGNED_SHAPES = [((3, 13), -1), ((20, 9), -1), ((9, 40), 0), ((7, 300), 0), ((2, 70), -1)]


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_misaligned_input_and_output(dtype_name, name):
    dtype = as_dtype(dtype_name)
    generator = np.random.default_rng(7)
    for shape, axis in MISALIGNED_SHAPES:
        x = (generator.standard_normal(shape) * 3).astype(dtype)
        shifted = misaligned(x)
        got = kernel_call(name, shifted, axis=axis)
        assert_close_to_reference(name, got, x, dtype_name, axis=axis)
        np.testing.assert_array_equal(got, kernel_call(name, x, axis=axis))
        np.testing.assert_array_equal(shifted, x)  # x is left as it was
        row_shape = list(shape)
        row_shape[axis] = 1
        for temperature in (0.7, misaligned(np.full(row_shape, 0.7))):
            got = kernel_call(name, shifted, axis=axis, temperature=temperature)
            assert_close_to_reference(name, got, x, dtype_name, axis=axis, temperature=0.7)
        flat = kernel_call(name, shifted, axis=None)  # all axes at once, flattened
        assert_close_to_reference(name, np.reshape(flat, (1, -1) if flat.ndim else (1,)),
                                  x.reshape(1, -1), dtype_name)
        # (a bool mask is always aligned: its items are single bytes)
        got = kernel_call(name, shifted, axis=axis, where=np.ones(shape, bool))
        assert_close_to_reference(name, got, x, dtype_name, axis=axis)
        result_shape = got.shape
        out = misaligned(np.zeros(result_shape, dtype=dtype))
        assert kernel_call(name, x, axis=axis, out=out) is out
        assert_close_to_reference(name, out, x, dtype_name, axis=axis)
        if name != "logsumexp":
            in_place = misaligned(x)
            assert kernel_call(name, in_place, axis=axis, out=in_place) is in_place
            assert_close_to_reference(name, in_place, x, dtype_name, axis=axis)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_arrays_in_the_losses_and_sampler_entries(dtype):
    x = (np.random.default_rng(8).standard_normal((20, 11)) * 2).astype(dtype)
    name = np.dtype(dtype).name
    for data, out in [(misaligned(x), np.empty_like(x)), (x, misaligned(np.zeros_like(x))),
                      (misaligned(x), misaligned(np.zeros_like(x)))]:
        stats = _kernels.softmax_stats(data, out, temperature=0.5)
        assert_close_to_reference("softmax", out, x, name, temperature=0.5)
        np.testing.assert_array_equal(stats[:, 0], x.max(axis=1))
    stats, sums = _kernels.block_sums(misaligned(x), 4, temperature=0.5)
    exact = np.exp((x.astype(np.longdouble) - x.max(axis=1, keepdims=True)) / 0.5)
    expected = np.add.reduceat(exact, np.arange(0, 11, 4), axis=1).astype(np.float64)
    np.testing.assert_allclose(sums, expected, rtol=2e-8)
    loss = smk.cross_entropy(misaligned(x), np.arange(20) % 11)
    hi, lo = exact_along(x, -1, 1.0)["log_softmax"]
    np.testing.assert_allclose(loss, -hi[np.arange(20), np.arange(20) % 11].mean(),
                               rtol=4 * np.finfo(dtype).eps)


def test_misaligned_arrays_never_reach_the_kernel():
    # The fast entries decline them, and run refuses them: only aligned copies go in.
    x = misaligned(np.arange(12.0).reshape(3, 4))
    assert _kernels.fast_normalize(0, x, -1, 1.0, None, None, None) is NotImplemented
    assert _kernels.fast_reduce(x, -1, 1.0, None, None, False, None) is NotImplemented
    aligned = np.arange(12.0).reshape(3, 4)
    out = misaligned(np.zeros((3, 4)))
    assert _kernels.fast_normalize(0, aligned, -1, 1.0, None, None, out) is NotImplemented
    with pytest.raises(ValueError, match="x is not aligned"):
        _kernels._kernel.run(0, x, 1, np.empty((3, 4)), 1, None, None, 1.0, None, 1)
    with pytest.raises(ValueError, match="out is not aligned"):
        _kernels._kernel.run(0, aligned, 1, out, 1, None, None, 1.0, None, 1)


# ---- l. the private entries check every argument ----


def good_arguments(op=0, dtype=np.float64, shape=(4, 5)):
    """A valid call of _kernel.run, as a dict of its arguments."""
    x = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    code = {np.float32: 0, np.float64: 1, np.float16: 2}[dtype]
    rows = shape[:-1] + (1,)
    return dict(op=op, x=x, in_type=code, out=np.empty_like(x) if op != 2 else None,
                out_type=code, where=None, temperature_array=None, temperature=1.0,
                lse=np.empty(rows, dtype=dtype) if op == 2 else None, n_threads=1)


ORDER = ["op", "x", "in_type", "out", "out_type", "where", "temperature_array", "temperature",
         "lse", "n_threads", "gain", "blocks", "block_size"]


def call_run(arguments):
    given = [arguments[k] for k in ORDER if k in arguments]
    return _kernels._kernel.run(*given)


def read_only(array):
    array = array.copy()
    array.flags.writeable = False
    return array


def zero_strided(shape):
    """A writeable array of ``shape`` whose last axis shares one element's memory."""
    base = np.zeros(shape[:-1] + (1,))
    return np.lib.stride_tricks.as_strided(base, shape, base.strides[:-1] + (0,),
                                           writeable=True)


BAD_RUN_CALLS = [
    # (label, op, changes)
    ("op out of range", 0, dict(op=3)),
    ("negative op", 0, dict(op=-1)),
    ("huge op", 0, dict(op=2**70)),
    ("op not an int", 0, dict(op=0.0)),
    ("in_type out of range", 0, dict(in_type=4)),
    ("in_type of another dtype", 0, dict(in_type=0)),
    ("in_type wider than x", 0, dict(x=np.ones((4, 5), np.float32), in_type=1)),
    ("x half read as float32", 0, dict(x=np.ones((4, 5), np.float16), in_type=0,
                                       out=np.empty((4, 5), np.float16), out_type=2)),
    ("x byte-swapped", 0, dict(x=np.ones((4, 5), ">f8"))),
    ("x not an array", 0, dict(x=[[1.0, 2.0]])),
    ("x 0-d", 0, dict(x=np.float64(1.0).reshape(()), out=np.empty(()))),
    ("out_type out of range", 0, dict(out_type=9)),
    ("out_type wider than out", 0, dict(out=np.empty((4, 5), np.float32), out_type=1)),
    ("out of fewer rows", 0, dict(out=np.empty((2, 5)))),
    ("out shorter", 0, dict(out=np.empty((4, 3)))),
    ("out of other dimensions", 0, dict(out=np.empty(20))),
    ("out read-only", 0, dict(out=read_only(np.empty((4, 5))))),
    ("out not an array", 0, dict(out=[0.0] * 20)),
    ("out missing", 0, dict(out=None)),
    ("out misaligned", 1, dict(out=misaligned(np.zeros((4, 5))))),
    ("where of fewer rows", 0, dict(where=np.ones((1, 5), bool))),
    ("where shorter", 0, dict(where=np.ones((4, 2), bool))),
    ("where not bool", 0, dict(where=np.ones((4, 5), np.int64))),
    ("temperatures of fewer rows", 0, dict(temperature_array=np.ones((1, 1)))),
    ("temperatures along the axis", 0, dict(temperature_array=np.ones((4, 5)))),
    ("temperatures float32", 0, dict(temperature_array=np.ones((4, 1), np.float32))),
    ("temperature negative in the array", 0,
     dict(temperature_array=np.array([[1.0], [-1.0], [1.0], [1.0]]))),
    ("temperature NaN in the array", 1,
     dict(temperature_array=np.array([[1.0], [1.0], [np.nan], [1.0]]))),
    ("temperature negative", 0, dict(temperature=-1.0)),
    ("temperature NaN", 2, dict(temperature=math.nan)),
    ("lse for log_softmax", 1, dict(lse=np.empty((4, 2)))),
    ("lse missing", 2, dict(lse=None)),
    ("lse of fewer rows", 2, dict(lse=np.empty((1, 1)))),
    ("lse of another dtype", 2, dict(lse=np.empty((4, 1), np.float32))),
    ("lse read-only", 2, dict(lse=read_only(np.empty((4, 1))))),
    ("lse longer", 2, dict(lse=np.empty((4, 3)))),
    ("lse pairs float32", 0, dict(lse=np.empty((4, 2), np.float32))),
    ("lse pairs of fewer rows", 0, dict(lse=np.empty((3, 2)))),
    ("lse pairs sharing memory", 0, dict(lse=zero_strided((4, 2)))),
    ("lse typed for softmax", 0, dict(lse=np.empty((4, 1)))),
    ("out for logsumexp", 2, dict(out=np.empty((4, 5)))),
    ("gain of fewer rows", 0, dict(gain=np.ones((2, 1)))),
    ("gain along the axis", 0, dict(gain=np.ones((4, 5)))),
    ("gain float32", 0, dict(gain=np.ones((4, 1), np.float32))),
    ("gain for log_softmax", 1, dict(gain=np.ones((4, 1)))),
    ("gain for logsumexp", 2, dict(gain=np.ones((4, 1)))),
    ("blocks for softmax", 0, dict(gain=None, blocks=np.empty((4, 2)), block_size=3)),
    ("blocks of block size 0", 2, dict(gain=None, blocks=np.empty((4, 1)), block_size=0)),
    ("blocks of negative size", 2, dict(gain=None, blocks=np.empty((4, 1)), block_size=-5)),
    ("blocks without a size", 2, dict(gain=None, blocks=np.empty((4, 2)))),
    ("blocks too few", 2, dict(gain=None, blocks=np.empty((4, 1)), block_size=3)),
    ("blocks of fewer rows", 2, dict(gain=None, blocks=np.empty((1, 2)), block_size=3)),
    ("blocks float32", 2, dict(gain=None, blocks=np.empty((4, 2), np.float32), block_size=3)),
    ("blocks read-only", 2, dict(gain=None, blocks=read_only(np.empty((4, 2))), block_size=3)),
    ("no threads", 0, dict(n_threads=0)),
    ("too many threads", 0, dict(n_threads=257)),
    ("huge thread count", 0, dict(n_threads=2**40)),
]


@pytest.mark.parametrize("label, op, changes", BAD_RUN_CALLS, ids=[c[0] for c in BAD_RUN_CALLS])
def test_private_run_checks_every_argument(label, op, changes):
    arguments = good_arguments(op)
    if "blocks" in changes:
        arguments["gain"] = None
    arguments.update(changes)
    if "gain" not in arguments and "blocks" in arguments:
        arguments["gain"] = None
    snapshot = {k: v.copy() for k, v in arguments.items() if isinstance(v, np.ndarray)}
    with pytest.raises((TypeError, ValueError)):
        call_run(arguments)
    for key, before in snapshot.items():  # nothing was written
        np.testing.assert_array_equal(arguments[key], before)


@pytest.mark.parametrize("op", [0, 1, 2])
def test_private_run_takes_its_valid_calls(op):
    arguments = good_arguments(op)
    assert call_run(arguments) is True
    x = arguments["x"]
    name = NAMES[op]
    result = arguments["out"] if op != 2 else arguments["lse"][:, 0]
    assert_close_to_reference(name, result, x, "float64")
    # The row statistics, a gain, and the sums by blocks.
    if op == 0:
        stats, gain = np.empty((4, 2)), np.arange(1.0, 5.0).reshape(4, 1)
        assert call_run(dict(arguments, lse=stats, gain=gain)) is True
        assert_close_to_reference("softmax", arguments["out"] / gain, x, "float64")
        exact_lse = exact_along(x, -1, 1.0)["logsumexp"][0]
        np.testing.assert_allclose(stats[:, 0] + stats[:, 1], exact_lse, rtol=1e-15)
    if op == 2:
        stats, blocks = np.empty((4, 2)), np.empty((4, 2))
        assert call_run(dict(arguments, lse=stats, gain=None, blocks=blocks, block_size=3)) is True
        exact = np.exp(x.astype(np.longdouble) - x.max(axis=1, keepdims=True))
        np.testing.assert_allclose(blocks, np.add.reduceat(exact, [0, 3], axis=1), rtol=1e-15)


def test_fast_entries_check_their_arguments():
    x = np.ones((3, 4))
    with pytest.raises(TypeError, match="7 arguments"):
        _kernels._kernel.normalize(0, x)
    with pytest.raises(TypeError, match="7 arguments"):
        _kernels._kernel.reduce(x)
    with pytest.raises(ValueError, match="op must be"):
        _kernels._kernel.normalize(2, x, -1, 1.0, None, None, None)
    # An out that cannot take the result is declined: the Python dispatch raises.
    for out in (np.empty(12), np.empty((4, 3)), np.empty((3, 4), np.float32),
                read_only(np.empty((3, 4))), np.empty((3, 4), ">f8")):
        assert _kernels._kernel.normalize(0, x, -1, 1.0, None, None, out) is NotImplemented


# ---- m. out= of the wrong shape ----


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", ["kernel", "generic"])
def test_out_of_the_wrong_shape_is_a_value_error(name, path):
    x = np.ones((5, 4))
    shape = (5,) if name == "logsumexp" else (5, 4)
    bad_shapes = [(20,), (4, 5), (5, 4, 1), (), (1, 5), (5, 1)]
    with _kernels.generic_only() if path == "generic" else _nothing():
        for bad in bad_shapes:
            if bad == shape:
                continue
            with pytest.raises(ValueError, match="shape"):
                FUNCTIONS[name](x, out=np.empty(bad))
            with pytest.raises(ValueError, match="shape"):  # the shape is told first
                FUNCTIONS[name](x, out=np.empty(bad, np.float32))
            with pytest.raises(ValueError, match="shape"):
                FUNCTIONS[name](x.astype(np.float32), axis=0 if name != "logsumexp" else -1,
                                out=np.empty(bad, np.float32))
        with pytest.raises(TypeError, match="dtype"):
            FUNCTIONS[name](x, out=np.empty(shape, np.float32))
        with pytest.raises(TypeError, match="NumPy array"):
            FUNCTIONS[name](x, out=np.zeros(shape).tolist())
        with pytest.raises(ValueError, match="read-only"):
            FUNCTIONS[name](x, out=read_only(np.empty(shape)))
        out = np.empty(shape)
        assert FUNCTIONS[name](x, out=out) is out
        expected = {"softmax": 0.25, "log_softmax": -math.log(4), "logsumexp": 1 + math.log(4)}
        np.testing.assert_allclose(out, expected[name], rtol=2**-50)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
