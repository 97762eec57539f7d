"""float16 and bfloat16 rows on the compiled kernel's float32 road (widened exactly to
float32, the float32 row passes, one rounding back): rows of several chunks, split
between threads, masked, tempered, strided, in place, with subnormal results, and the
edge rows that keep the double road; against a long-double reference, on every
instruction set the machine has."""

from __future__ import annotations

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
ml_dtypes = pytest.importorskip("ml_dtypes")

FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}
DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
# (significand bits, smallest normal exponent) of each format, for its ulp.
FORMATS = {"float16": (10, -14), "bfloat16": (7, -126)}
# A float32 result within 2 float32 ulp rounded once: half an ulp of the small format
# and a little (2^-12 of an ulp for float16, 2^-15 for bfloat16); the bound is 1 ulp.
ONE_ROUNDING = 0.5 + 2.0**-10


def reference(name, x, temperature=1.0, keep=None):
    """softmax / log_softmax / logsumexp along the last axis in np.longdouble (x86:
    64-bit significand); entries where ``keep`` is False take no part."""
    xl = np.asarray(x, dtype=np.float64).astype(np.longdouble)
    keep = np.ones(xl.shape, bool) if keep is None else np.broadcast_to(keep, xl.shape)
    t = np.asarray(temperature, dtype=np.float64).astype(np.longdouble)
    top = np.where(keep, xl, -np.inf).max(axis=-1, keepdims=True)
    shifted = np.where(keep, (xl - top) / t, -np.inf)
    terms = np.exp(shifted)
    is_top = keep & (xl == top)
    rest = np.where(is_top, 0, terms).sum(axis=-1, keepdims=True)
    log_total = np.log1p((is_top.sum(axis=-1, keepdims=True) - 1) + rest)
    if name == "softmax":
        return terms / (is_top.sum(axis=-1, keepdims=True) + rest)
    if name == "log_softmax":
        return shifted - log_total
    return (top / t + log_total)[..., 0]


def ulp_of(values, dtype_name):
    """The ulp of the small format at ``values`` (subnormal spacing below its normals)."""
    mantissa, lowest = FORMATS[dtype_name]
    values = np.asarray(values, dtype=np.float64)
    _, exponent = np.frexp(np.abs(values))
    exponent = np.where(values == 0, lowest + 1, exponent)
    return np.ldexp(1.0, np.maximum(exponent - 1, lowest) - mantissa)


def assert_accurate(name, got, x, dtype_name, temperature=1.0, keep=None):
    exact = reference(name, x, temperature, keep)
    got = np.asarray(got)
    assert got.dtype == DTYPES[dtype_name]
    got = got.astype(np.float64).astype(np.longdouble)
    infinite = np.isinf(exact)
    assert np.array_equal(got[infinite], exact[infinite]), name
    error = np.abs(got[~infinite] - exact[~infinite])
    ulp = ulp_of(exact[~infinite], dtype_name).astype(np.longdouble)
    if name == "logsumexp":  # the cancellation inherent to the problem: 2u |max / T|
        values = np.asarray(x, np.float64)
        if keep is not None:
            values = np.where(keep, values, -np.inf)
        top = np.abs(values.max(axis=-1) / np.ravel(temperature))
        allowed = ulp + 2.0 ** -FORMATS[dtype_name][0] * top[~infinite]
        assert np.all(error <= allowed), (name, float(np.max(error / allowed)))
        return
    worst = float(np.max(error / ulp))
    assert worst <= 1.0, (name, dtype_name, worst)
    assert worst <= ONE_ROUNDING, (name, dtype_name, worst)


def kernel_call(name, x, **options):
    before = _dispatch.counts["kernel"]
    result = FUNCTIONS[name](x, **options)
    assert _dispatch.counts["kernel"] == before + 1, "the kernel did not run"
    return result


def rows(dtype_name, shape, scale, seed):
    generator = np.random.default_rng(seed)
    return (generator.standard_normal(shape) * scale).astype(DTYPES[dtype_name])


# ---- long rows: several chunks, and one row split between threads ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 300_000), (3, 140_001)])
def test_long_rows_in_chunks(name, dtype_name, threads, shape):
    x = rows(dtype_name, shape, 6.0, 1)
    x[0, 7] = 40.0  # entries far below the maximum (exp of d < -87) in the first row
    with smk.num_threads(threads):
        assert_accurate(name, kernel_call(name, x), x, dtype_name)
        assert_accurate(name, kernel_call(name, x, temperature=0.7), x, dtype_name, 0.7)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("length", [1000, 300_000])
def test_in_place(name, dtype_name, length):
    x = rows(dtype_name, (2, length), 4.0, 2)
    expected_input = x.copy()
    out = kernel_call(name, x, out=x)
    assert out is x
    assert_accurate(name, x, expected_input, dtype_name)


# ---- masks, temperatures, strides ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("length", [37, 5000, 140_000])
def test_masked_rows(name, dtype_name, length):
    x = rows(dtype_name, (6, length), 5.0, 3)
    keep = np.random.default_rng(4).random(x.shape) < 0.6
    keep[1, :] = False
    keep[1, length // 2] = True  # a single entry kept
    keep[2, :] = False  # nothing kept: the double road's limits
    got = kernel_call(name, x, where=keep)
    live = [0, 1, 3, 4, 5]
    assert_accurate(name, got[live], x[live], dtype_name, keep=keep[live])
    if name == "softmax":
        assert np.all(got[2].astype(np.float64) == 0.0)
    else:
        assert np.all(got[2].astype(np.float64) == -np.inf)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("temperature", [0.05, 0.3, 2.5, 1e3])
def test_tempered_rows(name, dtype_name, temperature):
    x = rows(dtype_name, (8, 3000), 3.0, 5)
    got = kernel_call(name, x, temperature=temperature)
    assert_accurate(name, got, x, dtype_name, temperature)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_temperature_per_row_with_edge_rows(name, dtype_name):
    """Rows of temperature 0 or inf, and rows with a NaN, +inf or only -inf, keep the
    double road and its limits; the others take the float32 road."""
    x = rows(dtype_name, (6, 2000), 3.0, 6)
    t = np.array([[0.5], [0.0], [np.inf], [2.0], [1.0], [1.0]])
    x[4, 3] = np.inf
    x[5, 9] = np.nan
    got = kernel_call(name, x, temperature=t).astype(np.float64)
    finite = [0, 3]
    assert_accurate(name, got[finite].astype(x.dtype), x[finite], dtype_name, t[finite])
    top = x[1].astype(np.float64) == x[1].astype(np.float64).max()
    uniform = np.full(x.shape[1], 1.0 / x.shape[1])
    if name == "softmax":
        np.testing.assert_array_equal(got[1], np.where(top, 1.0 / top.sum(), 0.0))
        np.testing.assert_allclose(got[2], uniform, rtol=2.0**-7)
        np.testing.assert_array_equal(got[4], (np.arange(x.shape[1]) == 3).astype(float))
        assert np.all(np.isnan(got[5]))
    elif name == "logsumexp":
        assert got[1] == (np.inf if x[1].astype(float).max() > 0 else -np.inf)
        assert got[2] == pytest.approx(np.log(x.shape[1]), rel=2.0**-7)
        assert got[4] == np.inf and np.isnan(got[5])


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_strided_rows(name, dtype_name):
    base = rows(dtype_name, (5000, 6), 4.0, 7)
    # axis 0 of more than 4096 entries: rows with a stride of 12 bytes
    got = kernel_call(name, base[:, ::2], axis=0)
    assert_accurate(name, np.moveaxis(got, 0, -1), base[:, ::2].T, dtype_name)
    wide = rows(dtype_name, (4, 6002), 4.0, 8)[:, ::2]  # a stride of 4 bytes
    assert_accurate(name, kernel_call(name, wide), wide, dtype_name)


# ---- axis 0: blocks of adjacent rows ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("shape", [(300, 40), (7, 5, 3), (4096, 17)])
def test_axis_zero_blocks(name, dtype_name, shape):
    x = rows(dtype_name, shape, 5.0, 14)
    got = kernel_call(name, x, axis=0, temperature=0.8)
    if name != "logsumexp":  # the reduced axis last, as the reference takes it
        got = np.moveaxis(got, 0, -1)
    assert_accurate(name, got, np.moveaxis(x, 0, -1), dtype_name, 0.8)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_axis_zero_blocks_with_masks_and_edge_columns(name, dtype_name):
    """Columns with a NaN, a +inf, nothing kept or a temperature of 0 keep the double
    road and its limits; the other columns of their blocks take the float32 road."""
    x = rows(dtype_name, (200, 40), 5.0, 15)
    x[3, 2] = np.nan
    x[5, 7] = np.inf
    keep = np.random.default_rng(16).random(x.shape) < 0.7
    keep[:, 9] = False
    t = np.where(np.arange(40) == 11, 0.0, 1.5).reshape(1, 40)
    got = kernel_call(name, x, axis=0, where=keep, temperature=t).astype(np.float64)
    live = np.setdiff1d(np.arange(40), [2, 7, 9, 11])
    exact_got = (got[live] if name == "logsumexp" else got[:, live].T).astype(x.dtype)
    assert_accurate(name, exact_got, x[:, live].T, dtype_name, t[:, live].T, keep[:, live].T)
    if name == "softmax":
        assert np.all(np.isnan(got[:, 2]))
        np.testing.assert_array_equal(got[:, 7], (np.arange(200) == 5).astype(float))
        assert np.all(got[:, 9] == 0.0)
        column = np.where(keep[:, 11], x[:, 11].astype(np.float64), -np.inf)
        top = column == column.max()
        np.testing.assert_array_equal(got[:, 11], np.where(top, 1.0 / top.sum(), 0.0))


# ---- short rows, sixteen side by side ----


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("length", [1, 8, 37, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_short_rows(name, dtype_name, length, temperature):
    x = rows(dtype_name, (50, length), 5.0, 12)
    x[3, :] = -30.0 * np.arange(length)  # entries far below the maximum
    assert_accurate(name, kernel_call(name, x, temperature=temperature), x, dtype_name, temperature)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_short_rows_with_an_edge_row_or_temperatures_apart(name, dtype_name):
    """A group of sixteen rows with a row that is not finite, or with temperatures of
    their own, goes row by row: the finite rows are as accurate, the others keep their
    limits."""
    x = rows(dtype_name, (32, 20), 5.0, 13)
    x[5, 2] = np.inf
    t = np.where(np.arange(32) % 3 == 0, 0.5, 2.0).reshape(32, 1)
    got = kernel_call(name, x, temperature=t)
    finite = np.arange(32) != 5
    assert_accurate(name, got[finite], x[finite], dtype_name, t[finite])
    if name == "softmax":
        expected = (np.arange(20) == 2).astype(np.float64)
        np.testing.assert_array_equal(got[5].astype(np.float64), expected)


# ---- subnormal results ----


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_subnormal_float16_results(name):
    """softmax values below float16's smallest normal (2^-14), spacing 2^-24."""
    generator = np.random.default_rng(9)
    x = -generator.uniform(9.0, 18.0, (4, 3001))
    x[:, 0] = 0.0
    x = x.astype(np.float16)
    got = kernel_call(name, x)
    if name == "softmax":
        subnormal = (got > 0) & (got < 2.0**-14)
        assert subnormal.sum() > 1000
    assert_accurate(name, got, x, "float16")


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_subnormal_bfloat16_results(name, temperature):
    """softmax values below float32's (and bfloat16's) smallest normal, 2^-126."""
    generator = np.random.default_rng(10)
    x = -generator.uniform(80.0, 95.0, (3, 2003)) * temperature
    x[:, 0] = 0.0
    x[1, 1] = -0.5  # a total above 1
    x = x.astype(DTYPES["bfloat16"])
    got = kernel_call(name, x, temperature=temperature)
    if name == "softmax":
        values = got.astype(np.float64)
        assert ((values > 0) & (values < 2.0**-126)).sum() > 300
    assert_accurate(name, got, x, "bfloat16", temperature)


# ---- the other instruction sets ----


CASES = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ml_dtypes
    import softmaxkit as smk
    from softmaxkit import _kernels
    print(_kernels.simd())
    g = np.random.default_rng(11)
    out = {}
    for dt in ("float16", "bfloat16"):
        dtype = np.dtype(np.float16 if dt == "float16" else ml_dtypes.bfloat16)
        long = (g.standard_normal((2, 140_001)) * 6).astype(dtype)
        keep = g.random(long.shape) < 0.7
        low = -g.uniform(9.0 if dt == "float16" else 80.0, 18.0 if dt == "float16" else 95.0,
                         (2, 1001))
        low[:, 0] = 0.0
        low = low.astype(dtype)
        short = (g.standard_normal((64, 37)) * 5).astype(dtype)
        for i, f in enumerate([smk.softmax, smk.log_softmax, smk.logsumexp]):
            with smk.num_threads(2):
                out[f"{dt}-long-{i}"] = f(long, temperature=0.7, where=keep).view(np.uint16)
            out[f"{dt}-low-{i}"] = f(low).view(np.uint16)
            out[f"{dt}-short-{i}"] = f(short, temperature=1.5).view(np.uint16)
        out[f"{dt}-long-x"], out[f"{dt}-long-keep"] = long.view(np.uint16), keep
        out[f"{dt}-low-x"], out[f"{dt}-short-x"] = low.view(np.uint16), short.view(np.uint16)
    np.savez(sys.argv[1], **out)
    """
)


@pytest.mark.parametrize("variant", ["avx512", "avx2", "baseline"])
def test_every_instruction_set(variant, tmp_path):
    path = tmp_path / "out.npz"
    env = dict(os.environ, SOFTMAXKIT_SIMD=variant)
    ran = subprocess.run(
        [sys.executable, "-c", CASES, str(path)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    if ran.stdout.split()[0] != variant:
        pytest.skip(f"this machine has no {variant}")
    data = np.load(path)
    for dt, dtype in DTYPES.items():
        long = data[f"{dt}-long-x"].view(dtype)
        keep = data[f"{dt}-long-keep"]
        low = data[f"{dt}-low-x"].view(dtype)
        short = data[f"{dt}-short-x"].view(dtype)
        for i, name in enumerate(FUNCTIONS):
            got = data[f"{dt}-long-{i}"].view(dtype)
            assert_accurate(name, got, long, dt, 0.7, keep)
            assert_accurate(name, data[f"{dt}-low-{i}"].view(dtype), low, dt)
            assert_accurate(name, data[f"{dt}-short-{i}"].view(dtype), short, dt, 1.5)
