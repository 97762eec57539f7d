"""Signatures and errors: every bad argument is named in a clear error."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import softmaxkit as smk

FUNCTIONS = [smk.softmax, smk.log_softmax, smk.logsumexp]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_signature_shape(function):
    parameters = inspect.signature(function).parameters
    assert parameters["x"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert parameters["axis"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert parameters["axis"].default == -1
    for name in ("temperature", "where", "dtype"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    np.testing.assert_array_equal(function([[1.0, 2.0]], 0), function([[1.0, 2.0]], axis=0))


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("temperature", [-1.0, math.nan, -math.inf])
def test_bad_temperature(function, temperature):
    with pytest.raises(ValueError, match=r"temperature must be >= 0, got"):
        function([1.0, 2.0], temperature=temperature)


def test_bad_temperature_message_names_the_value():
    with pytest.raises(ValueError, match=r"^temperature must be >= 0, got -1.0$"):
        smk.softmax([1.0], temperature=-1)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -2.0"):
        smk.softmax([[1.0, 2.0]], temperature=np.array([[-2.0]]))
    with pytest.raises(ValueError, match="length 1 along the normalized axis 1"):
        smk.softmax(np.ones((2, 3)), temperature=np.ones((2, 3)))
    with pytest.raises(TypeError, match="temperature"):
        smk.softmax([1.0], temperature=None)


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_bad_axis(function):
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        function(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="repeated"):
        function(np.ones((2, 3)), axis=(1, -1))
    with pytest.raises(TypeError, match="axis must be"):
        function(np.ones((2, 3)), axis=1.5)


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "values", [np.array([1 + 1j, 2]), np.array(["a", "b"]), np.array([1.0, None], dtype=object)]
)
def test_bad_dtype(function, values):
    with pytest.raises(TypeError, match="x must have a real numeric dtype, got"):
        function(values)


def test_bad_dtype_argument():
    with pytest.raises(TypeError, match="dtype must be a real floating dtype, got int32"):
        smk.softmax([1.0], dtype=np.int32)


def test_bad_where():
    with pytest.raises(TypeError, match="where must be a boolean array"):
        smk.softmax([1.0, 2.0], where=np.array([1, 0]))
    with pytest.raises(ValueError, match=r"where of shape \(3,\) does not broadcast to x"):
        smk.softmax(np.ones((2, 4)), where=np.array([True, False, True]))


def test_bad_weights():
    with pytest.raises(ValueError, match=r"b of shape \(3,\) does not broadcast"):
        smk.logsumexp(np.ones((2, 4)), b=np.ones(3))


def test_mixed_libraries_are_refused():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="one array library"):
        smk.softmax(torch.ones(2), where=jnp.array([True, False]))


def test_no_in_place_update_of_the_input():
    x = np.array([[1.0, np.inf, -np.inf, np.nan]])
    before = x.copy()
    smk.softmax(x), smk.log_softmax(x, temperature=0.5), smk.logsumexp(x)
    np.testing.assert_array_equal(x, before)
