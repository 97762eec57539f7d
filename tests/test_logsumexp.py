"""logsumexp with weights ``b``: accuracy against mpmath, dtypes of the result, bad weights."""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmaxkit as smk

U64 = 2.0**-53


def exact_weighted(x, b):
    """(log|sum|, sign, condition number sum|b e| / |sum b e|) of ``log(sum(b * exp(x)))``
    at 80 digits, over the entries with ``b != 0``."""
    with mpmath.workdps(80):
        pairs = [(mpmath.mpf(float(a)), mpmath.mpf(float(w))) for a, w in zip(x, b) if w != 0]
        if not pairs:
            return -math.inf, 0.0, 1.0
        top = max(a for a, _ in pairs)
        terms = [w * mpmath.exp(a - top) for a, w in pairs]
        total = mpmath.fsum(terms)
        if total == 0:
            return -math.inf, 0.0, math.inf
        condition = mpmath.fsum(abs(t) for t in terms) / abs(total)
        return top + mpmath.log(abs(total)), float(mpmath.sign(total)), float(condition)


def readme_bound(value, x, b, unit=U64):
    """The README's bound for logsumexp: 2 ulp(result) + 2u|max x| (over the entries
    that take part)."""
    taking_part = np.abs(np.asarray(x)[np.asarray(b) != 0])
    return 2 * float(np.spacing(abs(float(value)))) + 2 * unit * float(np.max(taking_part))


def error(computed, exact):
    with mpmath.workdps(80):
        return float(abs(mpmath.mpf(float(computed)) - exact))


@pytest.mark.parametrize("weight", [1e-10, 1e-20, 1e-300, 5e-324, 1e300, 3.0])
def test_single_weight_far_from_one(weight):
    """log1p(|sum| - 1) cancelled every digit of a small sum: 1e-10 gave -23.02585084720009
    (2.3e7 ulp off; SciPy and JAX give -23.025850929940457) and 1e-20 gave -inf with a
    divide-by-zero warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = smk.logsumexp(np.array([0.0]), axis=None, b=np.array([weight]))
        magnitude, sign = smk.logsumexp(
            np.array([0.0]), axis=None, b=np.array([-weight]), return_sign=True
        )
    exact, _, _ = exact_weighted([0.0], [weight])
    assert error(value, exact) <= readme_bound(exact, [0.0], [weight])
    assert float(magnitude) == float(value) and float(sign) == -1.0
    if weight == 1e-10:
        assert float(value) == -23.025850929940457


def test_weights_far_from_one_on_the_generic_path_of_other_libraries():
    torch = pytest.importorskip("torch")
    x = np.array([[0.0, -1.0], [3.0, 2.0]])
    b = np.array([[1e-20, 1e-21], [1e-300, 2e-300]])
    expected = [float(exact_weighted(row, w)[0]) for row, w in zip(x, b)]
    got = smk.logsumexp(torch.from_numpy(x), b=torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, expected, rtol=4 * U64, atol=0)


# Weights over the whole range, both signs, log-uniform magnitudes and hypothesis' own
# float choices (subnormals, huge values, zero).
_magnitudes = st.builds(
    lambda sign, mantissa, exponent: sign * mantissa * 10.0**exponent,
    st.sampled_from([-1.0, 1.0]),
    st.floats(1.0, 9.99),
    st.integers(-320, 307),
)
_weights = st.one_of(
    _magnitudes,
    st.floats(-1e300, 1e300, allow_nan=False),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5]),
)
# Scores within 600 of each other: farther down the exponential itself is below the
# subnormal range and the term counts as 0 whatever its weight (as in SciPy and JAX).
_scores = st.floats(-300, 300, allow_nan=False)
_rows = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=_scores), hnp.arrays(np.float64, n, elements=_weights)
    )
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows, st.booleans())
def test_weighted_against_mpmath(row, one_sign):
    """Within the README's bound plus the rounding of the weighted terms, ``n u`` times
    the condition number of the sum (absolute; 1 for weights of one sign): no
    summation in working precision avoids it where the sum cancels or is close to 1."""
    x, b = row
    if one_sign:
        b = np.abs(b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        magnitude, sign = smk.logsumexp(x, b=b, return_sign=True)
        plain = smk.logsumexp(x, b=b)
    exact, exact_sign, condition = exact_weighted(x, b)
    if exact == -math.inf:
        assert magnitude == -np.inf and sign == 0 and plain == -np.inf
        return
    terms = int(np.count_nonzero(b))
    if terms * U64 * condition > 0.25:
        return  # so ill-conditioned that even the sign is not determined in float64
    assert sign == exact_sign
    allowed = readme_bound(exact, x, b) + terms * U64 * condition
    assert error(magnitude, exact) <= allowed
    if sign < 0:
        assert np.isnan(plain)
    else:
        assert plain == magnitude


@pytest.mark.parametrize("scale", [1e-320, 1e-300, 1e-200, 1e200, 1e300])
def test_rows_of_extreme_weights(scale):
    """Weights whose terms would round in the subnormal range, or whose sum would
    overflow, are summed scaled by a power of 2."""
    rng = np.random.default_rng(int(abs(math.log10(scale))))
    x = rng.uniform(-5, 5, size=(6, 9))
    b = rng.uniform(0.5, 1.5, size=(6, 9)) * scale
    b[::2] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        magnitude, sign = smk.logsumexp(x, b=b, return_sign=True)
    for i in range(x.shape[0]):
        exact, exact_sign, _ = exact_weighted(x[i], b[i])
        assert sign[i] == exact_sign
        # Weights of one sign per row: the condition number is 1.
        assert error(magnitude[i], exact) <= readme_bound(exact, x[i], b[i]) + 9 * U64


def test_huge_weights_do_not_overflow_the_sum():
    x = np.zeros(4)
    b = np.full(4, np.finfo(np.float64).max)
    exact, _, _ = exact_weighted(x, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = smk.logsumexp(x, b=b)
    assert np.isfinite(value)
    assert error(value, exact) <= readme_bound(exact, x, b)


def test_weights_that_take_no_part_are_deleted():
    """Masked entries (and b == 0 ones) are deleted whatever their weight: an inf or NaN
    weight under a False of ``where`` does not poison the row."""
    x = np.array([1.0, 2.0, 3.0])
    keep = np.array([True, False, True])
    for weight in (np.inf, np.nan, -np.inf):
        b = np.array([1.0, weight, 2.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value = smk.logsumexp(x, b=b, where=keep)
        assert float(value) == pytest.approx(math.log(math.e + 2 * math.e**3), rel=1e-15)


@pytest.mark.parametrize("b", [[1j, 1.0], np.array([1j, 1.0])])
def test_complex_weights_are_refused(b):
    """A complex ``b`` was cast to real, dropping its imaginary part with a warning."""
    with pytest.raises(TypeError, match="b must have a real numeric dtype, got complex128"):
        smk.logsumexp(np.array([2.0, 1.0]), axis=None, b=b)


@pytest.mark.parametrize(
    "b, name",
    [
        (np.array([1.0, None], dtype=object), "object"),
        (np.array(["a", "b"]), "str"),
        (["a", "b"], "str"),
    ],
)
def test_object_and_string_weights_are_refused(b, name):
    with pytest.raises(TypeError, match=f"b must have a real numeric dtype, got {name}"):
        smk.logsumexp(np.array([2.0, 1.0]), b=b)


def _promotion_cases():
    """(library, x dtype, b dtype, expected result dtype name), by each library's rules."""
    yield "numpy", "float32", "float64", "float64"
    yield "numpy", "float32", "int64", "float64"  # NumPy (and SciPy): int64 with float32
    yield "numpy", "float32", "int8", "float32"
    yield "numpy", "float16", "float32", "float32"
    yield "numpy", "int64", "float32", "float64"  # integers become float64 first
    yield "numpy", "float64", "float32", "float64"
    yield "torch", "float32", "float64", "float64"
    yield "torch", "float32", "int64", "float32"  # PyTorch: an integer keeps the float
    yield "jax", "float32", "float64", "float64"
    yield "array_api_strict", "float32", "float64", "float64"
    yield "array_api_strict", "float32", "int64", "float32"  # no promotion across kinds
    yield "dask", "float32", "float64", "float64"
    yield "tensorflow", "float32", "float64", "float64"
    yield "tensorflow", "float64", "float32", "float64"


def _dtype_name(dtype):
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype).rsplit(".", 1)[-1]


@pytest.mark.parametrize("library, x_dtype, b_dtype, expected", list(_promotion_cases()))
def test_result_dtype_is_promoted_with_the_weights(library, x_dtype, b_dtype, expected):
    """float32 ``x`` with float64 ``b`` gave a float32 result; the result now has the
    library's promoted dtype, as in SciPy, and so has the sign."""
    from matrix import ArrayLibrary, Backend

    backend = ArrayLibrary(Backend(library))
    x_values = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    b_values = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 5.0]])
    x = backend.asarray(x_values.astype(x_dtype))
    b = backend.asarray(b_values.astype(b_dtype))
    value, sign = smk.logsumexp(x, b=b, return_sign=True)
    assert _dtype_name(value.dtype) == expected and _dtype_name(sign.dtype) == expected
    x_exact = x_values.astype(x_dtype).astype(np.float64)
    b_exact = b_values.astype(b_dtype).astype(np.float64)
    reference = np.log(np.sum(b_exact * np.exp(x_exact), axis=-1))
    rtol = 1e-14 if expected == "float64" else 2e-7
    np.testing.assert_allclose(backend.to_numpy(value), reference, rtol=rtol)


def test_python_number_weights_keep_the_dtype():
    x = np.array([1.0, 2.0], dtype=np.float32)
    assert smk.logsumexp(x, b=2.0).dtype == np.float32
    assert smk.logsumexp(x, b=2).dtype == np.float32
    assert smk.logsumexp(x, b=np.array([1.0, 2.0]), dtype=np.float32).dtype == np.float32
