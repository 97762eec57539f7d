"""Accuracy against an exact reference, on friendly, random and adversarial rows.

Bounds (issue 3): softmax and log_softmax within 2 ulp (float32) and 4 ulp (float64);
logsumexp within 2 ulp(result) + 2 u |max x|. Run on both NumPy paths (compiled kernel
and generic) and on PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import longdouble_reference, mp_reference, ulp_error

import softmaxkit as smk

ULP_BOUND = {np.float32: 2.0, np.float64: 4.0}
UNIT_ROUNDOFF = {np.float32: 2.0**-24, np.float64: 2.0**-53}


def check(x, dtype, axis=-1, reference=mp_reference):
    """Assert the three functions meet their bounds on ``x`` (given in ``dtype``)."""
    x = np.asarray(x, dtype=dtype)
    p_exact, lp_exact, lse_exact = reference(x.astype(np.float64), axis=axis)
    bound = ULP_BOUND[dtype]
    p = smk.softmax(x, axis=axis)
    lp = smk.log_softmax(x, axis=axis)
    lse = smk.logsumexp(x, axis=axis)
    assert p.dtype == dtype and lp.dtype == dtype and lse.dtype == dtype
    assert np.max(ulp_error(p, p_exact, dtype)) <= bound, "softmax"
    with np.errstate(over="ignore"):
        lp_exact_in_dtype = lp_exact.astype(dtype)
        finite = np.isfinite(lp_exact_in_dtype)
        lse_in_dtype = np.asarray(lse_exact).astype(dtype)
    assert np.max(ulp_error(lp[finite], lp_exact[finite], dtype), initial=0) <= bound, "log_softmax"
    assert np.all(lp[~finite] == lp_exact_in_dtype[~finite]), "log_softmax overflow"
    lse_error = np.abs(lse.astype(np.longdouble) - np.asarray(lse_exact, np.longdouble))
    lse_spacing = np.spacing(np.abs(lse_in_dtype)).astype(np.longdouble)
    allowed = 2 * lse_spacing + 2 * UNIT_ROUNDOFF[dtype] * np.max(np.abs(x), axis=axis)
    assert np.all(lse_error <= allowed), "logsumexp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_examples_exact_within_bounds(numpy_path, dtype):
    import softmaxkit.demo

    examples = softmaxkit.demo.load_seed_examples()
    for name, case in examples["vectors"].items():
        if name == "batch_2d":
            continue
        x = np.asarray(case["input"])
        if dtype is np.float64:
            assert np.max(ulp_error(smk.softmax(x), case["softmax"], dtype)) <= 4, name
            assert np.max(ulp_error(smk.log_softmax(x), case["log_softmax"], dtype)) <= 4, name
            assert ulp_error(smk.logsumexp(x), case["logsumexp"], dtype) <= 2, name
        else:
            check(x, dtype)
    batch = examples["vectors"]["batch_2d"]
    for axis in (-1, 0):
        exact = np.asarray([row["softmax"] for row in batch[f"axis_{axis}"]])
        exact = exact if axis == -1 else exact.T
        computed = smk.softmax(np.asarray(batch["input"], dtype=dtype), axis=axis)
        assert np.max(ulp_error(computed, exact, dtype)) <= ULP_BOUND[dtype]


def test_shipped_examples_are_exact():
    """The shipped reference values themselves agree with a 60-digit recomputation, so
    the tests that compare against them compare against exact values (the data is the
    package's own copy: no test reads a folder outside the repository)."""
    import mpmath

    import softmaxkit.demo

    vectors = softmaxkit.demo.load_seed_examples()["vectors"]
    checked = 0
    for name, case in vectors.items():
        if "softmax" not in case:
            continue
        with mpmath.workdps(60):
            scores = [mpmath.mpf(float(v)) for v in case["input"]]
            top = max(scores)
            total = mpmath.fsum(mpmath.exp(v - top) for v in scores)
            exact = [float(mpmath.exp(v - top) / total) for v in scores]
        assert np.max(ulp_error(case["softmax"], exact, np.float64)) <= 0.5, name
        checked += 1
    assert checked >= 5


def test_temperature_sweep_against_exact_division():
    import mpmath

    import softmaxkit.demo

    sweep = softmaxkit.demo.load_seed_examples()["temperature_sweep"]
    x = np.asarray(sweep["input"])
    for temperature, exact_decimal in zip(sweep["temperatures"], sweep["softmax"]):
        computed = smk.softmax(x, temperature=temperature)
        # The shared reference divides by the decimal temperature: 0.1 differs from its
        # float64 by 5.5e-17 relative, worth a few ulp of exp(x / 0.1).
        assert np.max(ulp_error(computed, exact_decimal, np.float64)) <= 6
        scaled = [mpmath.mpf(float(v)) / mpmath.mpf(temperature) for v in x]
        total = mpmath.fsum(mpmath.exp(v) for v in scaled)
        exact = [float(mpmath.exp(v) / total) for v in scaled]
        assert np.max(ulp_error(computed, exact, np.float64)) <= 4


ADVERSARIAL = {
    "scipy_float64_trap": ([700.0, -5e-14], np.float64),
    "scipy_float32_trap": ([80.0, -3e-6], np.float32),
    "near_zero_lse": ([0.0, -40.0], np.float64),
    "huge_spread": ([1e30, -1e30, 0.0], np.float64),
    "large_equal": ([1e300, 1e300, 1e300 * (1 - 2**-52)], np.float64),
    "ties": ([3.0, 3.0, 3.0, -1.0], np.float64),
    "tiny": ([1e-300, -1e-300, 5e-324], np.float64),
    "mixed_magnitudes": ([-745.0, -700.1, 1.5, 0.0, 1e-17, 2.0**-30], np.float64),
    "float32_wide": ([88.0, -87.0, 0.5, 103.9], np.float32),
    "float32_near_max": ([3e38, 3e38, -3e38], np.float32),
}


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_rows(numpy_path, case):
    values, dtype = ADVERSARIAL[case]
    check(values, dtype)


def test_documented_values(numpy_path):
    assert float(smk.logsumexp([0.0, -40.0])) == pytest.approx(4.248354255291589e-18, rel=1e-15)
    assert float(smk.log_softmax([0.0, -40.0])[0]) == pytest.approx(
        -4.248354255291589e-18, rel=1e-15
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 30.0, 700.0])
def test_random_rows(numpy_path, dtype, scale):
    rng = np.random.default_rng(int(scale) + (32 if dtype is np.float32 else 64))
    x = rng.standard_normal((40, 37)) * scale
    if dtype is np.float32:
        x = np.clip(x, -3e38, 3e38)
    check(x, dtype)
    check(x, dtype, axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exponent_spread(numpy_path, dtype):
    """Magnitudes spread over many binades, where x - max rounds badly."""
    rng = np.random.default_rng(7)
    signs = rng.choice([-1.0, 1.0], size=(30, 25))
    x = signs * 2.0 ** rng.uniform(-40, 9.5 if dtype is np.float64 else 6.4, size=(30, 25))
    check(x, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length", [10**4, 10**6])
def test_long_rows(numpy_path, dtype, length):
    rng = np.random.default_rng(length)
    x = rng.standard_normal((1, length)) * 5
    check(x, dtype, reference=longdouble_reference)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature_accuracy(numpy_path, dtype):
    """Division by a temperature must not cost accuracy (Dekker remainder)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-30, 30, size=(20, 16)).astype(dtype)
    for temperature in (0.3, 0.7, 1.9, 3.3e-2):
        scaled = x.astype(np.float64) / np.float64(temperature)
        if dtype is np.float32:
            scaled = x.astype(np.float64) / np.float64(np.float32(temperature))
        import mpmath

        exact = []
        for row in x:
            values = [mpmath.mpf(float(v)) / mpmath.mpf(float(dtype(temperature))) for v in row]
            total = mpmath.fsum(mpmath.exp(v) for v in values)
            exact.append([float(mpmath.exp(v) / total) for v in values])
        del scaled
        computed = smk.softmax(x, temperature=dtype(temperature))
        assert np.max(ulp_error(computed, np.asarray(exact), dtype)) <= ULP_BOUND[dtype]


def test_torch_meets_the_same_bounds():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((25, 31)) * 200).astype(dtype)
        x[0, :2] = [
            700.0 if dtype is np.float64 else 80.0,
            -5e-14 if dtype is np.float64 else -3e-6,
        ]
        p_exact, lp_exact, _ = mp_reference(x.astype(np.float64))
        p = smk.softmax(torch.from_numpy(x)).numpy()
        lp = smk.log_softmax(torch.from_numpy(x)).numpy()
        assert np.max(ulp_error(p, p_exact, dtype)) <= ULP_BOUND[dtype]
        finite = np.isfinite(lp_exact.astype(dtype))
        assert np.max(ulp_error(lp[finite], lp_exact[finite], dtype)) <= ULP_BOUND[dtype]


def test_peers_fail_the_traps_we_pass():
    """The regression the compensated shift fixes: SciPy's error on these rows."""
    special = pytest.importorskip("scipy.special")
    x = np.array([700.0, -5e-14])
    exact, _, _ = mp_reference(x)
    ours = np.max(ulp_error(smk.softmax(x), exact, np.float64))
    theirs = np.max(ulp_error(special.softmax(x), exact, np.float64))
    assert ours <= 4 < theirs
