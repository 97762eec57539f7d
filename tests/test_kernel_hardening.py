"""The compiled kernel at the edges of its arguments: extreme temperatures on every
path, many dimensions, the thread setting, misaligned arrays, bad arguments to the
private entries, and a wrong ``out=``. Also run by ``make test-asan`` (AddressSanitizer
and UndefinedBehaviorSanitizer), where a read or write outside an array aborts."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _kernels

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
    before = _kernels.dispatch_counts["kernel"]
    result = FUNCTIONS[name](x, **options)
    assert _kernels.dispatch_counts["kernel"] == before + 1, "the kernel did not run"
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
    # The losses' entry: each row's softmax, maximum and log-normaliser.
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
