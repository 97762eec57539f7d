"""The choice of the kernels' instruction set: CPU detection and SOFTMAXKIT_SIMD."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from softmaxkit import _kernels

pytestmark = pytest.mark.skipif(not _kernels.kernel_available(), reason="needs the kernel")

ORDER = ["baseline", "avx2", "avx512"]  # worst to best


def _cpu_flags() -> set[str] | None:
    """The CPU's flags from /proc/cpuinfo (Linux), independently of the extension."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _cpu_supports() -> dict[str, bool] | None:
    flags = _cpu_flags()
    if flags is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    return {
        "baseline": True,
        "avx2": {"avx2", "fma"} <= flags,
        "avx512": {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags,
    }


def _expected(request, have_avx2, have_avx512, built):
    """The rule of the README, written out: the best usable variant at or below the one
    asked for (the best of all for no request or an unknown one)."""
    usable = {
        "baseline": True,
        "avx2": have_avx2 and "avx2" in built,
        "avx512": have_avx2 and have_avx512 and "avx512" in built,
    }
    best = max((v for v in ORDER if usable[v]), key=ORDER.index)
    if request in (None, "", "auto") or request not in ORDER:
        return best
    return max((v for v in ORDER[: ORDER.index(request) + 1] if usable[v]), key=ORDER.index)


def test_the_variants_of_this_build():
    built = _kernels._kernel.simd_built()
    assert built[-1] == "baseline"
    assert built == sorted(built, key=ORDER.index, reverse=True)
    assert _kernels.simd() in built
    if platform.machine() == "x86_64":
        assert "avx2" in built


@pytest.mark.parametrize("request_", [None, "", "auto", "avx512", "avx2", "baseline"])
@pytest.mark.parametrize("have_avx2", [False, True])
@pytest.mark.parametrize("have_avx512", [False, True])
def test_the_choice(request_, have_avx2, have_avx512):
    built = _kernels._kernel.simd_built()
    name, message = _kernels._kernel.simd_choice(request_, have_avx2, have_avx512)
    assert name == _expected(request_, have_avx2, have_avx512, built)
    if request_ in ORDER and name != request_:
        # A request that cannot be honoured is said, with the variant used instead.
        assert f"SOFTMAXKIT_SIMD={request_}" in message
        assert message.endswith(f"using {name}")
    else:
        assert message == ""


@pytest.mark.parametrize("value", ["AVX2", "sse", "avx-512", "avx512 "])
def test_an_unknown_value_is_named_and_the_best_variant_used(value):
    name, message = _kernels._kernel.simd_choice(value, True, True)
    assert name == _kernels._kernel.simd_built()[0]
    assert f"SOFTMAXKIT_SIMD={value} is not one of avx512, avx2, baseline, auto" in message


SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from softmaxkit import _kernels
        import softmaxkit as smk
    print(_kernels.simd())
    for w in caught:
        print("WARNING", w.category.__name__, w.message)
    x = np.random.default_rng(5).standard_normal((40, 301)).astype(sys.argv[1]) * 30
    np.save(sys.argv[2], smk.softmax(x))
    """
)


def _import_with(value, tmp_path, dtype="float32"):
    env = {k: v for k, v in os.environ.items() if k != "SOFTMAXKIT_SIMD"}
    if value is not None:
        env["SOFTMAXKIT_SIMD"] = value
    out = tmp_path / f"{value}-{dtype}.npy"
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, dtype, str(out)],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )
    lines = completed.stdout.split("\n")
    return lines[0], [line for line in lines if line.startswith("WARNING")], np.load(out)


def _reference_softmax(dtype):
    x = np.random.default_rng(5).standard_normal((40, 301)).astype(dtype) * 30
    xl = x.astype(np.longdouble)
    e = np.exp(xl - xl.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ulp(got, ref, dtype):
    finfo = np.finfo(dtype)
    spacing = np.maximum(np.abs(ref), finfo.smallest_normal) * finfo.eps
    return float(np.max(np.abs(got.astype(np.longdouble) - ref) / spacing.astype(np.longdouble)))


@pytest.mark.parametrize("value", [None, "avx512", "avx2", "baseline", "bogus"])
def test_the_variant_at_import(value, tmp_path):
    supports = _cpu_supports()
    if supports is None:
        pytest.skip("the CPU's flags are read from /proc/cpuinfo on x86-64")
    built = _kernels._kernel.simd_built()
    name, warnings, got = _import_with(value, tmp_path)
    expected = _expected(value, supports["avx2"], supports["avx512"], built)
    assert name == expected
    if value in (None, "") or value == expected:
        assert warnings == []
    else:
        assert len(warnings) == 1, warnings
        assert "RuntimeWarning" in warnings[0] and f"SOFTMAXKIT_SIMD={value}" in warnings[0]
        assert warnings[0].endswith(f"using {expected}")
    # Whatever was chosen computes within the bound (2 ulp for float32).
    assert _ulp(got, _reference_softmax(np.float32), np.float32) <= 2.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_supported_variant_is_within_the_bounds(dtype, tmp_path):
    supports = _cpu_supports() or {"baseline": True}
    bound = 2.0 if dtype == "float32" else 4.0
    ref = _reference_softmax(np.dtype(dtype))
    for value in _kernels._kernel.simd_built():
        if not supports.get(value):
            continue
        name, warnings, got = _import_with(value, tmp_path, dtype)
        assert (name, warnings) == (value, [])
        assert _ulp(got, ref, np.dtype(dtype)) <= bound, value


SMALL_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    import ml_dtypes
    import softmaxkit as smk
    rng = np.random.default_rng(11)
    y = np.concatenate([rng.standard_normal((16, 333)) * s for s in (1, 5, 12, 40)])
    y[3, 7] = np.nan
    y[5, :] = -np.inf
    y[6, 9] = np.inf
    outs = []
    for f in (smk.softmax, smk.log_softmax):
        for dt in (np.float16, ml_dtypes.bfloat16):
            for t in (1.0, 0.3):
                outs.append(f(y.astype(dt), temperature=t).view(np.uint16).ravel())
                outs.append(f(y, dtype=dt, temperature=t).view(np.uint16).ravel())
    np.save(sys.argv[1], np.concatenate(outs))
    """
)


def test_float16_and_bfloat16_conversions_agree_with_the_portable_ones(tmp_path):
    """The AVX-512 variant converts float16/bfloat16 in registers (round to odd, then to
    nearest even); the baseline variant converts each value by frexp/nearbyint. Both
    round each double result once: their stored bits must agree everywhere (NaN, inf and
    empty rows included)."""
    pytest.importorskip("ml_dtypes")
    supports = _cpu_supports()
    if not supports or not supports["avx512"] or "avx512" not in _kernels._kernel.simd_built():
        pytest.skip("needs the AVX-512 variant and a CPU that runs it")
    results = {}
    for value in ("avx512", "baseline"):
        env = dict(os.environ, SOFTMAXKIT_SIMD=value)
        out = tmp_path / f"{value}.npy"
        subprocess.run([sys.executable, "-W", "ignore", "-c", SMALL_SCRIPT, str(out)],
                       env=env, check=True, timeout=120)
        results[value] = np.load(out)
    assert np.array_equal(results["avx512"], results["baseline"])
