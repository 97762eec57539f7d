"""Accuracy against an exact reference, on friendly, random and adversarial rows.

Bounds (issue 3): softmax and log_softmax within 2 ulp (float32) and 4 ulp (float64);
logsumexp within 2 ulp(result) + 2 u |max x|. Run on both NumPy paths (compiled kernel
and generic) and on PyTorch.
"""

from __future__ import annotations

import math

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
    with np.errstate(over="ignore"):  # the spacing of the largest float is inf
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
    # x - max beyond -largest for the last two entries only: the generic path took
    # -1 - DBL_MAX to overflow and gave -inf for a log_softmax of -1.797e308.
    "float_max_spread": ([1.7976931348623157e308, -1.0, -8e307, 0.5, -1.7e308], np.float64),
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


# ---------------------------------------------------------------------------------------
# Extreme temperatures on the generic path (the path of every library but NumPy's kernel)

DTYPE_BOUND = {np.float16: 1.0, **ULP_BOUND}
UNIT = {np.float16: 2.0**-11, **UNIT_ROUNDOFF}
EXTREME_TEMPERATURES = [5e-324, 1e-310, 1e-300, 1e-40, 1e-30, 0.37, 1e30, 1e300, 1.7e308, np.inf]
RELATIVE_ROW = np.array([0.0, -3.3, 1.7, -20.0, -1e-3, -700.0, 1.7])


def _working_temperature(temperature, dtype):
    """The temperature as the computation holds it: in float32 for float16 input."""
    work = np.float32 if dtype is np.float16 else np.float64
    with np.errstate(over="ignore", under="ignore"):
        return float(np.asarray(temperature, dtype=work))


def mp_tempered(row, temperature):
    """(softmax, log_softmax, logsumexp) of ``row / temperature`` at 60 digits, with the
    limits for a temperature of 0 (the maxima share the mass) and inf (uniform)."""
    import mpmath

    values = [mpmath.mpf(float(v)) for v in row]
    if temperature == 0.0:
        top = max(values)
        ties = sum(1 for v in values if v == top)
        p = [1 / mpmath.mpf(ties) if v == top else mpmath.mpf(0) for v in values]
        lse = mpmath.inf if top > 0 else (-mpmath.inf if top < 0 else mpmath.log(ties))
        return p, [mpmath.log(v) if v else -mpmath.inf for v in p], lse
    if temperature == math.inf:
        n = len(values)
        return [1 / mpmath.mpf(n)] * n, [-mpmath.log(n)] * n, mpmath.log(n)
    scaled = [v / mpmath.mpf(temperature) for v in values]
    top = max(scaled)
    total = mpmath.fsum(mpmath.exp(v - top) for v in scaled)
    log_total = mpmath.log(total)
    return (
        [mpmath.exp(v - top - log_total) for v in scaled],
        [v - top - log_total for v in scaled],
        top + log_total,
    )


def _extreme_rows(temperature, dtype):
    """Rows whose scaled scores are moderate (x of the temperature's size), spread
    (huge against the temperature) or tied, in ``dtype``."""
    largest = float(np.finfo(dtype).max)
    size = temperature if math.isfinite(temperature) else largest
    with np.errstate(over="ignore", under="ignore"):
        moderate = np.clip(RELATIVE_ROW * size, -largest, largest)
    spread = [0.0, 1e3, 6e4] if dtype is np.float16 else [0.0, 1e8, 1e24]
    rows = [moderate, spread, [3.0, 3.0, -1.0], [largest, -1.0, -largest]]
    with np.errstate(over="ignore"):
        return [np.asarray(r, dtype=np.float64).astype(dtype) for r in rows]


def _check_tempered(x, temperature, dtype, p, lp, lse):
    import mpmath

    exact_p, exact_lp, exact_lse = mp_tempered(x, _working_temperature(temperature, dtype))
    with np.errstate(over="ignore"):
        exact_p = np.array([float(v) for v in exact_p])
        exact_lp = np.array([float(v) for v in exact_lp])
        lp_in_dtype = exact_lp.astype(dtype)
        lse_in_dtype = np.asarray(float(exact_lse)).astype(dtype)
    bound = DTYPE_BOUND[dtype]
    assert p.dtype == dtype and lp.dtype == dtype and lse.dtype == dtype
    assert np.max(ulp_error(p, exact_p, dtype)) <= bound, ("softmax", x, temperature, p)
    finite = np.isfinite(lp_in_dtype)
    assert np.max(ulp_error(lp[finite], exact_lp[finite], dtype), initial=0) <= bound, (
        "log_softmax", x, temperature, lp
    )
    assert np.all(lp[~finite] == lp_in_dtype[~finite]), ("log_softmax limit", x, lp)
    if not np.isfinite(lse_in_dtype):
        assert lse == lse_in_dtype, ("logsumexp limit", x, temperature, lse)
        return
    t = _working_temperature(temperature, dtype)
    scale = 0.0 if t in (0.0, math.inf) else float(np.max(np.abs(x.astype(np.float64)))) / t
    with mpmath.workdps(60):
        lse_error = float(abs(mpmath.mpf(float(lse)) - exact_lse))
    allowed = 2 * float(np.spacing(abs(lse_in_dtype))) + 2 * UNIT[dtype] * scale
    assert lse_error <= allowed, ("logsumexp", x, temperature, lse, float(exact_lse))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("temperature", EXTREME_TEMPERATURES)
def test_extreme_temperatures_on_the_generic_path(dtype, temperature):
    """Subnormal, tiny and huge temperatures: within the bounds, the right limits, no
    warning. softmax([0, 1e8, 1e24], temperature=1e-310) raised an overflow warning
    (a TypeError under -W error); temperature=1e-310 cost 97 ulp, 1e300 cost 214."""
    import warnings

    import softmaxkit._kernels as kernels

    with kernels.generic_only(), warnings.catch_warnings():
        warnings.simplefilter("error")
        for x in _extreme_rows(temperature, dtype):
            p = smk.softmax(x, temperature=temperature)
            lp = smk.log_softmax(x, temperature=temperature)
            lse = smk.logsumexp(x, temperature=temperature)
            _check_tempered(x, temperature, dtype, p, lp, lse)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_extreme_per_row_temperatures(library, dtype):
    """One extreme temperature per row in one call, given as an array (also as a list
    and with a tuple of axes, which NumPy's compiled path leaves to the generic one):
    float16 input with a list temperature out of float32's range warned on the cast."""
    import warnings

    import softmaxkit._kernels as kernels

    temperatures = [t for t in EXTREME_TEMPERATURES if t != 1.7e308]
    rows = [_extreme_rows(t, dtype)[0] for t in temperatures]
    x = np.stack(rows)
    column = [[t] for t in temperatures]
    if library == "torch":
        torch = pytest.importorskip("torch")
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        back = lambda a: a.numpy() if a.dtype != torch.bfloat16 else a.float().numpy()  # noqa: E731
        calls = [(to(x), to(np.asarray(column, dtype=np.float64)), -1)]
    else:
        to = back = np.asarray
        calls = [(x, np.asarray(column), -1), (x, column, -1), (x[:, None, :], column, (1, 2))]
    with kernels.generic_only(), warnings.catch_warnings():
        warnings.simplefilter("error")
        for scores, temperature, axis in calls:
            if isinstance(axis, tuple):
                temperature = np.asarray(temperature)[:, None, :]
            p = back(smk.softmax(scores, axis=axis, temperature=temperature)).reshape(x.shape)
            lp = back(smk.log_softmax(scores, axis=axis, temperature=temperature))
            lse = back(smk.logsumexp(scores, axis=axis, temperature=temperature))
            lp, lse = lp.reshape(x.shape), lse.reshape(-1)
            for i, t in enumerate(temperatures):
                _check_tempered(x[i], t, dtype, p[i], lp[i], lse[i])
