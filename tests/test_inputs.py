"""What kinds of input the namespace layer takes: ndarray subclasses, masked arrays,
NumPy operands next to another library's arrays, devices, and JAX's debug checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit._kernels import generic_only

CORE = [smk.softmax, smk.log_softmax, smk.logsumexp]
X = np.array([[1.0, 3.0, 2.0, -1.0], [0.5, -2.0, 4.0, 4.0]])
KEEP = np.array([[True, False, True, True], [True, True, False, True]])
B = np.array([[1.0, -0.5, 2.0, 1.0], [0.25, 1.0, 3.0, 1.0]])
T_ROWS = np.array([[0.5], [3.0]])


# ---------------------------------------------------------------------------------------
# Masked arrays are refused (converting them would drop the mask)

MASKED = np.ma.array([[1.0, 100.0, 3.0]], mask=[[False, True, False]])
MASKED_CALLS = {
    "softmax": lambda m: smk.softmax(m),
    "log_softmax": lambda m: smk.log_softmax(m),
    "logsumexp": lambda m: smk.logsumexp(m),
    "logsumexp b": lambda m: smk.logsumexp(np.ones((1, 3)), b=m),
    "softmax where": lambda m: smk.softmax(np.ones((1, 3)), where=np.ma.getdata(m) > 0),
    "sample": lambda m: smk.sample(m, rng=0),
    "cross_entropy": lambda m: smk.cross_entropy(m, np.array([0])),
    "sparsemax": lambda m: smk.sparsemax(m),
    "entropy": lambda m: smk.entropy(m),
    "LogSumExpState": lambda m: smk.LogSumExpState().update(m),
}


@pytest.mark.parametrize("name", sorted(MASKED_CALLS))
def test_masked_arrays_are_refused(name):
    """softmax of a masked array ignored the mask: the masked 100 took all the mass,
    ``sample`` drew it, and a fully masked row gave NaN with a warning."""
    call = MASKED_CALLS[name]
    if name == "softmax where":
        call = lambda m: smk.softmax(np.ones((1, 3)), where=np.ma.array(  # noqa: E731
            [[True, True, True]], mask=[[False, True, False]]
        ))
    with pytest.raises(TypeError, match=r"masked arrays .* where=~np\.ma\.getmaskarray"):
        call(MASKED)


@pytest.mark.parametrize("function", CORE, ids=lambda f: f.__name__)
def test_masked_mask_and_temperature_are_refused_on_the_compiled_path(function):
    """A plain float ndarray with a masked ``where`` or temperature (the compiled path
    takes ndarray masks and per-row temperatures before any namespace is found)."""
    x = np.array([[1.0, 100.0, 3.0]])
    mask = np.ma.array([[True, True, True]], mask=[[False, True, False]])
    with pytest.raises(TypeError, match="masked arrays"):
        function(x, where=mask)
    with pytest.raises(TypeError, match="masked arrays"):
        function(x, temperature=np.ma.array([[1.0]], mask=[[True]]))


def test_the_documented_way_to_pass_a_mask():
    data, mask = np.ma.getdata(MASKED), np.ma.getmaskarray(MASKED)
    p = smk.softmax(data, where=~mask)
    expected = np.exp([1.0, 3.0]) / np.exp([1.0, 3.0]).sum()
    np.testing.assert_allclose(p[0, [0, 2]], expected, rtol=1e-15)
    assert p[0, 1] == 0.0


# ---------------------------------------------------------------------------------------
# ndarray subclasses become plain ndarrays


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("function", CORE, ids=lambda f: f.__name__)
def test_matrix_input_gives_a_plain_ndarray(function, axis):
    """np.matrix failed with "matrix.max() got an unexpected keyword argument 'keepdims'"."""
    matrix = np.matrix(X)
    result = function(matrix, axis=axis)
    assert type(result) is np.ndarray
    # A subclass is converted to a plain ndarray first, and takes the same path as one.
    np.testing.assert_array_equal(result, function(X, axis=axis))
    with generic_only():
        np.testing.assert_array_equal(function(matrix, axis=axis), function(X, axis=axis))
        np.testing.assert_array_equal(
            smk.softmax(X, where=np.matrix(KEEP), temperature=np.matrix(T_ROWS)),
            smk.softmax(X, where=KEEP, temperature=T_ROWS),
        )


class _Misbehaving(np.ndarray):
    """An ndarray subclass whose every method and ufunc lies."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return np.zeros(np.broadcast_shapes(*(np.shape(a) for a in inputs)))

    def __array_function__(self, func, types, args, kwargs):
        return 7.0

    def max(self, *args, **kwargs):
        return -1.0

    def sum(self, *args, **kwargs):
        return 0.0


@pytest.mark.parametrize("function", CORE, ids=lambda f: f.__name__)
def test_a_misbehaving_subclass_cannot_change_the_answer(function):
    x = X.view(_Misbehaving)
    for kwargs in ({}, {"axis": 0}, {"temperature": 0.5}, {"where": KEEP.view(_Misbehaving)}):
        result = function(x, **kwargs)
        assert type(result) is np.ndarray
        plain = {k: (np.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
        np.testing.assert_array_equal(result, function(X, **plain))
        with generic_only():
            np.testing.assert_array_equal(function(x, **kwargs), function(X, **plain))


# ---------------------------------------------------------------------------------------
# NumPy operands next to arrays of a library that takes them


def _calls(asarray, x_native):
    """(name, call with NumPy operands, call with native operands) for each core call."""
    x = X
    keep, b, t = KEEP, B, T_ROWS
    native = asarray
    yield "softmax where", lambda: smk.softmax(x_native, where=keep), lambda: smk.softmax(
        x_native, where=native(keep)
    )
    yield "log_softmax temperature", lambda: smk.log_softmax(
        x_native, temperature=t
    ), lambda: smk.log_softmax(x_native, temperature=native(t))
    yield "logsumexp b", lambda: smk.logsumexp(x_native, b=b), lambda: smk.logsumexp(
        x_native, b=native(b)
    )
    yield "numpy x, native where", lambda: smk.softmax(x, where=native(keep)), lambda: smk.softmax(
        x_native, where=native(keep)
    )


@pytest.mark.parametrize("library", ["torch", "jax", "dask"])
def test_numpy_operands_join_torch_jax_and_dask(library):
    """smk.softmax(jax_x, where=numpy_mask) raised "inputs must be arrays of one array
    library", though jax.nn.softmax takes it; so did torch tensors with NumPy masks."""
    from matrix import ArrayLibrary, Backend

    backend = ArrayLibrary(Backend(library))
    x_native = backend.asarray(X)
    for name, mixed, native in _calls(backend.asarray, x_native):
        got, expected = mixed(), native()
        assert backend.is_native(got), name
        np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(expected), name)


def test_numpy_operands_reach_the_other_functions_too():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(X.copy())
    loss = smk.cross_entropy(x, np.array([1, 2]))
    assert torch.equal(loss, smk.cross_entropy(x, torch.tensor([1, 2])))
    draws = smk.sample(x, where=KEEP, rng=3)
    assert torch.equal(draws, smk.sample(x, where=torch.from_numpy(KEEP), rng=3))


def test_incompatible_libraries_are_still_refused():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    xp_strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="one array library"):
        smk.softmax(torch.ones(2), where=jnp.array([True, False]))
    with pytest.raises(TypeError, match="one array library"):
        smk.logsumexp(jnp.ones(2), b=torch.ones(2))
    # array_api_strict refuses NumPy operands itself, and so does softmaxkit.
    with pytest.raises(TypeError, match="one array library"):
        smk.softmax(xp_strict.ones(2), where=np.array([True, False]))


# ---------------------------------------------------------------------------------------
# array_api_strict on a non-default device


def _device_calls(xp, device):
    def on(values, dtype=None):
        return xp.asarray(np.asarray(values), device=device, dtype=dtype)

    x, keep, b, t = on(X), on(KEEP), on(B), on(T_ROWS)
    empty = xp.zeros((2, 0), device=device)
    yield "softmax", lambda: smk.softmax(x), lambda: smk.softmax(X)
    yield "log_softmax", lambda: smk.log_softmax(x), lambda: smk.log_softmax(X)
    yield "logsumexp", lambda: smk.logsumexp(x), lambda: smk.logsumexp(X)
    for name, kwargs, plain in (
        ("where", {"where": keep}, {"where": KEEP}),
        ("temperature array", {"temperature": t}, {"temperature": T_ROWS}),
        ("temperature 0", {"temperature": 0.0}, {"temperature": 0.0}),
        ("temperature inf", {"temperature": math.inf}, {"temperature": math.inf}),
        ("temperature 1e-300", {"temperature": 1e-300}, {"temperature": 1e-300}),
        ("axis None", {"axis": None}, {"axis": None}),
    ):
        for function in (smk.softmax, smk.log_softmax, smk.logsumexp):
            yield (
                f"{function.__name__} {name}",
                lambda f=function, k=kwargs: f(x, **k),
                lambda f=function, k=plain: f(X, **k),
            )
    yield "logsumexp b", lambda: smk.logsumexp(x, b=b), lambda: smk.logsumexp(X, b=B)
    yield (
        "logsumexp b tiny",
        lambda: smk.logsumexp(x, b=b * 1e-310),
        lambda: smk.logsumexp(X, b=B * 1e-310),
    )
    yield (
        "logsumexp b return_sign",
        lambda: smk.logsumexp(x, b=b, return_sign=True, where=keep),
        lambda: smk.logsumexp(X, b=B, return_sign=True, where=KEEP),
    )
    yield (
        "logsumexp return_sign",
        lambda: smk.logsumexp(x, return_sign=True),
        lambda: smk.logsumexp(X, return_sign=True),
    )
    yield "logsumexp scalar b", lambda: smk.logsumexp(x, b=2.0), lambda: smk.logsumexp(X, b=2.0)
    yield (
        "float32",
        lambda: smk.softmax(on(X, xp.float32), temperature=0.3),
        lambda: smk.softmax(X.astype(np.float32), temperature=0.3),
    )
    yield "integers", lambda: smk.logsumexp(on([1, 2, 3])), lambda: smk.logsumexp([1, 2, 3])
    yield "0-d", lambda: smk.log_softmax(on(2.0)), lambda: smk.log_softmax(np.array(2.0))
    for function in (smk.softmax, smk.log_softmax, smk.logsumexp):
        yield (
            f"{function.__name__} empty",
            lambda f=function: f(empty),
            lambda f=function: f(np.zeros((2, 0))),
        )
    yield (
        "logsumexp empty b",
        lambda: smk.logsumexp(empty, b=empty, return_sign=True),
        lambda: smk.logsumexp(np.zeros((2, 0)), b=np.zeros((2, 0)), return_sign=True),
    )


def test_every_core_function_stays_on_a_non_default_device():
    """logsumexp on array_api_strict's device1 raised "Inputs to where must all use the
    same device", and an empty input came back on the CPU device."""
    xp = pytest.importorskip("array_api_strict")
    device = xp.Device("device1")
    for name, call, reference in _device_calls(xp, device):
        results = call()
        results = results if isinstance(results, tuple) else (results,)
        with generic_only():  # the code array_api_strict runs, on NumPy
            expected = reference()
        expected = expected if isinstance(expected, tuple) else (expected,)
        for result, value in zip(results, expected, strict=True):
            assert result.device == device, name
            got = np.asarray(xp.asarray(result, device=xp.Device("CPU_DEVICE"))._array)
            rtol = 4 * float(np.finfo(got.dtype).eps)
            np.testing.assert_allclose(got, value, rtol=rtol, atol=0, err_msg=name)


# ---------------------------------------------------------------------------------------
# JAX's debug_nans / debug_infs


def _jax_calls(jnp):
    x = jnp.asarray(X)
    keep, b, t = jnp.asarray(KEEP), jnp.asarray(B), jnp.asarray(T_ROWS)
    yield "logsumexp scalar", lambda: smk.logsumexp(jnp.asarray(1.0), axis=None)
    yield "softmax ones", lambda: smk.softmax(jnp.ones(4))
    for function in CORE:
        for name, kwargs in (
            ("", {}),
            ("where", {"where": keep}),
            ("temperature", {"temperature": 0.3}),
            ("temperature array", {"temperature": t}),
            ("temperature 0", {"temperature": 0.0}),
            ("temperature inf", {"temperature": math.inf}),
            ("axis 0", {"axis": 0}),
        ):
            yield f"{function.__name__} {name}", lambda f=function, k=kwargs: f(x, **k)
        yield f"{function.__name__} float16", lambda f=function: f(x.astype(jnp.float16))
    yield "logsumexp b", lambda: smk.logsumexp(x, b=b)
    yield "logsumexp b return_sign", lambda: smk.logsumexp(x, b=b, return_sign=True)
    yield "logsumexp return_sign", lambda: smk.logsumexp(x, return_sign=True)


def _flat(result):
    parts = result if isinstance(result, tuple) else (result,)
    return np.concatenate([np.ravel(np.asarray(p)) for p in parts])


@pytest.mark.parametrize("check, flagged", [("debug_nans", np.isnan), ("debug_infs", np.isinf)])
def test_jax_debug_checks_pass_on_finite_input(check, flagged):
    """Under jax.debug_nans / jax.debug_infs (outside jit), finite input raised
    FloatingPointError: the checks flag the eager creation of the -inf and NaN
    constants of the edge rows. JAX's own functions are jitted, so only their result is
    checked; softmaxkit's now are too, and give the same numbers. A result that holds
    what the check looks for (log_softmax at temperature 0 has -inf) still raises."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    calls = list(_jax_calls(jnp))
    expected = {name: _flat(call()) for name, call in calls}
    assert sum(not np.any(flagged(e)) for e in expected.values()) >= 20
    with getattr(jax, check)(True):
        for name, call in calls:
            if np.any(flagged(expected[name])):
                with pytest.raises(FloatingPointError):
                    call()
            else:
                np.testing.assert_array_equal(_flat(call()), expected[name], name)


EDGE_ROWS = {
    "some -inf": [0.0, -math.inf, 1.0],
    "all -inf": [-math.inf, -math.inf],
    "+inf": [math.inf, 1.0],
    "NaN": [math.nan, 1.0],
}


@pytest.mark.parametrize("check, flagged", [("debug_nans", np.isnan), ("debug_infs", np.isinf)])
@pytest.mark.parametrize("row", sorted(EDGE_ROWS))
def test_jax_debug_checks_at_the_edge_rows(check, flagged, row):
    """On rows with -inf, +inf or NaN, the check raises exactly when the result holds
    what it looks for, as for JAX's own jitted functions: jax.nn.softmax of [0, -inf, 1]
    raises nothing under debug_infs (its result is finite), jax.nn.log_softmax of it does
    (-inf in the result), and both raise under debug_nans on a NaN row. (Creating such
    an array eagerly under the check raises already, so the rows are made before.)"""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(EDGE_ROWS[row])
    for function in CORE:
        result = np.asarray(function(x))
        with getattr(jax, check)(True):
            if np.any(flagged(result)):
                with pytest.raises(FloatingPointError):
                    function(x)
            else:
                np.testing.assert_array_equal(np.asarray(function(x)), result)
