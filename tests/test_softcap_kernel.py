"""The kernel's soft cap of float32 logits (``softmaxkit._kernels.softcap``).

``c * tanh(x / c)`` rounded once to float32, and the derivative ``1 - tanh(x / c)**2``
(written as float64, or multiplied into a float32 gradient), against references
computed independently: ``tanh`` and ``cosh`` in extended precision (``np.longdouble``
where it has 64 bits of mantissa, else mpmath), rounded once. Every SIMD variant
that this machine runs is checked in a subprocess (``SOFTMAXKIT_SIMD``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import mpmath
import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _kernels

pytestmark = pytest.mark.skipif(not _kernels.kernel_available(), reason="needs the kernel")

VALUES, SCALE = _kernels.SOFTCAP_VALUES, _kernels.SOFTCAP_SCALE
DERIVATIVE, BOTH = _kernels.SOFTCAP_DERIVATIVE, _kernels.SOFTCAP_BOTH
SCALE_BY = _kernels.SOFTCAP_SCALE_BY
EXTENDED = np.finfo(np.longdouble).nmant >= 63
CAPS = [30.0, 1.0, 0.1, 50.0, 2.0**-64, 2.0**64, 7.3]


def _special(cap):
    """Special values and values at the formula's seams, as float32."""
    tiny = np.float32(2.0**-149)
    seams = [cap * math.log(2) / 4, cap / 32, cap * 354.0, cap * 9.0, cap * 19.1]
    around = [s * f for s in seams for f in (1 - 1e-6, 1.0, 1 + 1e-6)]
    values = [math.inf, -math.inf, math.nan, 0.0, -0.0, tiny, -tiny, 1e-30, -1e-38,
              3.4e38, -3.4e38, 1.0, -1.0, cap, -cap, 2 * cap, -0.5 * cap] + around
    values += [-v for v in around]
    with np.errstate(over="ignore"):
        return np.array(values, dtype=np.float32)


def _logits(rng, shape, cap):
    """Normal logits of a few scales around the cap, and the special values."""
    x = rng.standard_normal(shape) * rng.choice([0.01, 0.3, 1.0, 3.0, 30.0], size=shape)
    with np.errstate(over="ignore"):
        x = (x * cap).astype(np.float32)
    special = _special(cap)
    flat = x.reshape(-1)
    flat[: min(flat.size, special.size)] = special[: flat.size]
    return x


def _reference(x, cap):
    """``cap * tanh(x / cap)`` and ``1 / cosh(x / cap)**2`` in extended precision."""
    if EXTENDED:
        u = x.astype(np.longdouble) / np.longdouble(cap)
        with np.errstate(over="ignore"):
            tanh, cosh = np.tanh(u), np.cosh(u)
        capped = np.longdouble(cap) * tanh
        capped[np.isneginf(x)] = -np.inf
        return capped, 1 / (cosh * cosh)
    capped = np.empty(x.shape, dtype=object)
    derivative = np.empty(x.shape, dtype=object)
    with mpmath.workdps(40):
        for i, v in np.ndenumerate(x):
            if math.isnan(v):
                capped[i] = derivative[i] = mpmath.nan
                continue
            if v == -math.inf:
                capped[i], derivative[i] = mpmath.mpf("-inf"), mpmath.mpf(0)
                continue
            u = mpmath.mpf(float(v)) / cap
            capped[i] = cap * mpmath.tanh(u)
            derivative[i] = 1 / mpmath.cosh(u) ** 2
    return capped, derivative


def _as_float(reference):
    return np.array(reference, dtype=np.float64) if reference.dtype == object else reference


def _assert_rounded_once(got, exact):
    """Each entry of float32 ``got`` is ``exact`` rounded to float32: within half an ulp,
    up to 1e-12 relative (the kernel works in float64), and nearly always the nearest."""
    exact = _as_float(exact)
    nearest = exact.astype(np.float32)
    nan = np.isnan(nearest)
    np.testing.assert_array_equal(np.isnan(got), nan)
    got, exact, nearest = got[~nan], exact[~nan], nearest[~nan]
    same = got == nearest
    assert np.all(np.signbit(got[same & (got == 0)]) == np.signbit(nearest[same & (got == 0)]))
    finite = np.isfinite(exact)
    np.testing.assert_array_equal(got[~finite], nearest[~finite])
    g = got[finite].astype(np.longdouble)
    e = exact[finite]
    half_ulp = np.spacing(np.abs(got[finite])).astype(np.longdouble) / 2
    assert np.all(np.abs(g - e) <= half_ulp + 1e-12 * np.abs(e))
    assert np.mean(~same) <= 1e-4


def _assert_derivative_close(got, exact, x, cap):
    """The float64 derivative within 2e-14 relative (the kernel's exp is within 7e-15),
    plus what an ulp of ``u = x / cap`` makes of it (the condition number is ``2|u|``);
    0 where it is below 2**-1000."""
    exact = exact.astype(np.float64)
    with np.errstate(over="ignore"):
        u = np.abs(x.astype(np.float64) / cap)
    bound = (2e-14 + 2 * np.minimum(u, 1e3) * 2.0**-52) * exact + 2.0**-1000
    assert np.all(np.abs(got - exact) <= bound)


def _run(mode, x, out, cap, threads=2, d=None):
    if d is None:
        assert _kernels._kernel.softcap(mode, x, out, cap, threads) is None
    else:
        assert _kernels._kernel.softcap(mode, x, out, cap, threads, d) is None
    return out


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("shape", [(37, 1003), (3, 7), (1, 1), (2, 16), (64, 513)])
def test_values_against_extended_precision(cap, shape):
    x = _logits(np.random.default_rng(len(shape) + shape[1]), shape, cap)
    exact, _ = _reference(x, cap)
    got = _run(VALUES, x, np.empty_like(x), cap)
    _assert_rounded_once(got, exact)
    assert np.all(np.abs(got[np.isfinite(x)]) <= np.float32(cap))


@pytest.mark.parametrize("cap", CAPS)
def test_derivative_and_scale_against_sech_squared(cap):
    x = _logits(np.random.default_rng(1), (19, 301), cap)
    _, exact = _reference(x, cap)
    exact = _as_float(exact)
    got = _run(DERIVATIVE, x, np.empty(x.shape), cap)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    ok = ~np.isnan(x)
    _assert_derivative_close(got[ok], exact[ok], x[ok], cap)
    gradient = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    scaled = _run(SCALE, x, gradient.copy(), cap)
    _assert_rounded_once(scaled[ok], gradient[ok].astype(np.longdouble) * exact[ok])
    assert np.all(np.isnan(scaled[~ok]))
    # both in one pass: the capped logits as alone, the derivative as close
    both = np.empty(x.shape)
    capped = _run(BOTH, x, np.empty_like(x), cap, d=both)
    np.testing.assert_array_equal(capped, _run(VALUES, x, np.empty_like(x), cap))
    np.testing.assert_array_equal(np.isnan(both), np.isnan(x))
    _assert_derivative_close(both[ok], exact[ok], x[ok], cap)
    # the gradient times a derivative so written, rounded once
    scaled_by = _run(SCALE_BY, both, gradient.copy(), 1.0)
    _assert_rounded_once(scaled_by[ok], gradient[ok].astype(np.longdouble) * both[ok])
    assert np.all(np.isnan(scaled_by[~ok]))


def test_special_values():
    cap = 30.0
    x = np.array([[np.inf, -np.inf, np.nan, 0.0, -0.0]], dtype=np.float32)
    got = _run(VALUES, x, np.empty_like(x), cap)
    assert got[0, 0] == np.float32(cap) and got[0, 1] == -np.inf and np.isnan(got[0, 2])
    assert got[0, 3] == 0 and not np.signbit(got[0, 3])
    assert got[0, 4] == 0 and np.signbit(got[0, 4])
    derivative = _run(DERIVATIVE, x, np.empty(x.shape), cap)
    np.testing.assert_array_equal(derivative[0, [0, 1, 3, 4]], [0.0, 0.0, 1.0, 1.0])
    assert np.isnan(derivative[0, 2])
    cap = 7.0  # not a float32 of its own: +inf gives cap rounded to float32
    x = np.array([[np.inf, -np.inf]], dtype=np.float32)
    np.testing.assert_array_equal(_run(VALUES, x, np.empty_like(x), cap), [[7.0, -np.inf]])


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_threads_rows_and_strides_do_not_change_an_entry(threads):
    """Splits over threads fall inside rows; rows of a larger array (row strides that
    are not the row length); each entry as when computed alone."""
    cap = 30.0
    rng = np.random.default_rng(3)
    big = _logits(rng, (41, 2 * 6144 + 37), cap)
    x = big[::2, 5:-3]
    alone = np.array([[_run(VALUES, x[i : i + 1, j : j + 1], np.empty((1, 1), np.float32),
                            cap, 1)[0, 0] for j in range(0, x.shape[1], 997)]
                      for i in range(x.shape[0])])
    out_big = np.full((x.shape[0], x.shape[1] + 11), 5.0, dtype=np.float32)
    out = out_big[:, 4:-7]
    _run(VALUES, x, out, cap, threads)
    np.testing.assert_array_equal(out[:, ::997], alone)
    assert np.all(out_big[:, :4] == 5.0) and np.all(out_big[:, -7:] == 5.0)
    _assert_rounded_once(out, _reference(x, cap)[0])
    derivative = _run(DERIVATIVE, x, np.empty(x.shape), cap, threads)
    np.testing.assert_array_equal(derivative, _run(DERIVATIVE, x, np.empty(x.shape), cap, 1))


def test_empty_rows():
    for shape in [(0, 5), (4, 0)]:
        x = np.ones(shape, dtype=np.float32)
        assert _run(VALUES, x, np.empty_like(x), 30.0).shape == shape


def test_the_entry_checks_its_arguments():
    x = np.ones((2, 3), dtype=np.float32)
    entry = _kernels._kernel.softcap
    with pytest.raises(ValueError, match="mode"):
        entry(3, x, np.empty_like(x), 30.0, 1)
    with pytest.raises(ValueError, match="cap"):
        entry(VALUES, x, np.empty_like(x), 2.0**70, 1)
    with pytest.raises(ValueError, match="x must be float32"):
        entry(VALUES, x.astype(np.float64), np.empty_like(x), 30.0, 1)
    with pytest.raises(ValueError, match="out must be float64"):
        entry(DERIVATIVE, x, np.empty_like(x), 30.0, 1)
    with pytest.raises(ValueError, match="contiguous rows"):
        entry(VALUES, np.ones((2, 6), dtype=np.float32)[:, ::2], np.empty_like(x), 30.0, 1)
    with pytest.raises(ValueError, match="shape"):
        entry(VALUES, x, np.empty((3, 2), dtype=np.float32), 30.0, 1)
    with pytest.raises(ValueError, match="2-D"):
        entry(VALUES, x.reshape(-1), np.empty(6, dtype=np.float32), 30.0, 1)
    with pytest.raises(ValueError, match="d is needed"):
        entry(BOTH, x, np.empty_like(x), 30.0, 1)
    with pytest.raises(ValueError, match="d is needed"):
        entry(VALUES, x, np.empty_like(x), 30.0, 1, np.empty(x.shape))
    with pytest.raises(ValueError, match="d must be float64"):
        entry(BOTH, x, np.empty_like(x), 30.0, 1, np.empty_like(x))
    with pytest.raises(ValueError, match="shape"):
        entry(BOTH, x, np.empty_like(x), 30.0, 1, np.empty((2, 2)))
    with pytest.raises(ValueError, match="x must be float64"):
        entry(SCALE_BY, x, np.empty_like(x), 1.0, 1)


def test_the_wrapper_declines_what_the_entry_does_not_take():
    x = np.ones((2, 3), dtype=np.float32)
    softcap = _kernels.softcap
    assert softcap(VALUES, x, np.empty_like(x), 2.0**65) is NotImplemented
    assert softcap(VALUES, x, np.empty_like(x), math.nan) is NotImplemented
    assert softcap(VALUES, x.astype(np.float64), np.empty_like(x), 30.0) is NotImplemented
    assert softcap(VALUES, x, x, 30.0) is NotImplemented  # overlap
    assert softcap(VALUES, x, np.empty((2, 6), np.float32)[:, ::2], 30.0) is NotImplemented
    out = np.empty_like(x)
    assert softcap(BOTH, x, out, 30.0) is NotImplemented  # d missing
    assert softcap(BOTH, x, out, 30.0, out.astype(np.float64)) is out
    assert softcap(BOTH, x, out, 30.0, np.empty((2, 3), np.float32)) is NotImplemented
    assert softcap(SCALE_BY, x, out, 1.0) is NotImplemented  # float32 factors
    with _kernels.generic_only():
        assert softcap(VALUES, x, np.empty_like(x), 30.0) is NotImplemented
    # x with rows that are not contiguous is copied first
    wide = np.arange(12, dtype=np.float32).reshape(2, 6)
    got = softcap(VALUES, wide[:, ::2], np.empty_like(x), 30.0)
    _assert_rounded_once(got, _reference(wide[:, ::2].copy(), 30.0)[0])


def _cross_entropy_reference(x, target, cap):
    """Mean cross-entropy of the capped logits and its gradient, in extended precision."""
    capped, derivative = _reference(x, cap)
    capped, derivative = _as_float(capped), _as_float(derivative)
    top = capped.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(capped - top).sum(axis=1))
    rows = np.arange(x.shape[0])
    loss = np.mean(lse - capped[rows, target])
    p = np.exp(capped - lse[:, None])
    p[rows, target] -= 1
    return loss, p * derivative / x.shape[0]


@pytest.mark.parametrize("cap", [30.0, 2.0**-64, 2.0**70])
def test_cross_entropy_across_blocks(cap, monkeypatch):
    """Several blocks of rows (the NumPy road's), with the cap in the entry's range and
    outside it (the NumPy formula of ``_softcapped_float32``)."""
    taken = []
    original = _kernels.softcap

    def spy(mode, x, out, softcap, d=None):
        result = original(mode, x, out, softcap, d)
        taken.append((mode, result is not NotImplemented))
        return result

    monkeypatch.setattr(_kernels, "softcap", spy)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((70, 40000)) * 10).astype(np.float32)
    target = rng.integers(0, x.shape[1], x.shape[0])
    loss, grad = smk.cross_entropy(x, target, softcap=cap, return_grad=True)
    ref_loss, ref_grad = _cross_entropy_reference(x, target, cap)
    assert abs(float(loss) - float(ref_loss)) <= 1e-6 * abs(float(ref_loss)) + 1e-30
    scale = np.abs(ref_grad).max(axis=1, keepdims=True)
    assert np.all(np.abs(grad - ref_grad) <= 2e-6 * scale + 1e-45)
    assert float(smk.cross_entropy(x, target, softcap=cap)) == float(loss)
    if cap <= 2.0**64:
        # three blocks of rows: the capped logits and the derivative of each, then its
        # gradient scaled; for the loss alone the capped logits alone
        assert taken == [(BOTH, True), (SCALE_BY, True)] * 3 + [(VALUES, True)] * 3
    else:
        # the NumPy formula's derivative (float64) multiplied in by the kernel
        assert taken == [(BOTH, False), (SCALE_BY, True)] * 3 + [(VALUES, False)] * 3


_VARIANT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from softmaxkit import _kernels
    x = np.load(sys.argv[1])
    results = {}
    for mode, dtype in ((0, np.float32), (2, np.float64)):
        out = np.empty(x.shape, dtype=dtype)
        _kernels._kernel.softcap(mode, x, out, 30.0, 2)
        np.save(sys.argv[2] + f"/{mode}.npy", out)
    g = np.load(sys.argv[3])
    _kernels._kernel.softcap(1, x, g, 30.0, 2)
    np.save(sys.argv[2] + "/1.npy", g)
    capped, d = np.empty(x.shape, dtype=np.float32), np.empty(x.shape)
    _kernels._kernel.softcap(3, x, capped, 30.0, 2, d)
    np.save(sys.argv[2] + "/3.npy", capped)
    np.save(sys.argv[2] + "/3d.npy", d)
    g = np.load(sys.argv[3])
    _kernels._kernel.softcap(4, d, g, 1.0, 2)
    np.save(sys.argv[2] + "/4.npy", g)
    print(json.dumps(_kernels.simd()))
    """
)


def _variants():
    built = _kernels._kernel.simd_built()
    return [v for v in ("avx512", "avx2", "baseline") if v in built]


@pytest.mark.parametrize("variant", _variants())
def test_each_simd_variant(tmp_path, variant):
    x = _logits(np.random.default_rng(5), (29, 6144 + 45), 30.0)
    g = np.random.default_rng(6).standard_normal(x.shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "g.npy", g)
    env = dict(os.environ, SOFTMAXKIT_SIMD=variant)
    completed = subprocess.run(
        [sys.executable, "-c", _VARIANT_SCRIPT, str(tmp_path / "x.npy"), str(tmp_path),
         str(tmp_path / "g.npy")],
        check=True, env=env, capture_output=True, text=True,
    )
    used = json.loads(completed.stdout.strip().splitlines()[-1])
    if used != variant:
        pytest.skip(f"this CPU does not run {variant}")
    exact, derivative = _reference(x, 30.0)
    _assert_rounded_once(np.load(tmp_path / "0.npy"), exact)
    derivative = _as_float(derivative)
    got = np.load(tmp_path / "2.npy")
    ok = ~np.isnan(x)
    _assert_derivative_close(got[ok], derivative[ok], x[ok], 30.0)
    scaled = np.load(tmp_path / "1.npy")
    _assert_rounded_once(scaled[ok], g[ok].astype(np.longdouble) * derivative[ok])
    _assert_rounded_once(np.load(tmp_path / "3.npy"), exact)
    both = np.load(tmp_path / "3d.npy")
    _assert_derivative_close(both[ok], derivative[ok], x[ok], 30.0)
    scaled_by = np.load(tmp_path / "4.npy")
    _assert_rounded_once(scaled_by[ok], g[ok].astype(np.longdouble) * both[ok])
