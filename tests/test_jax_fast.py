"""JAX arrays through the compiled kernel (XLA's foreign-function interface) and the
closed-form gradients (custom_vjp).

References: the mpmath/longdouble references of ``reference.py`` (ulp bounds), SciPy,
``jax.nn``'s own gradients, numerical differentiation (``jax.test_util.check_grads``)
and the rules of the edge table written out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_kernels import assert_accurate, reference

import softmaxkit as smk

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
_jax = pytest.importorskip("softmaxkit._jax")



@pytest.fixture(autouse=True, scope="module")
def _x64():
    """float64 arrays for this module's tests, and the setting restored afterwards (the
    documents' doctests show JAX's default, float32)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


needs_ffi = pytest.mark.skipif(
    not _jax.ffi_available(), reason="built without jaxlib's FFI headers"
)
INF = np.inf
FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}


def _rows(shape, seed=0, scale=4.0, dtype=np.float32):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def _hlo(function, *args):
    return jax.jit(function).lower(*args).compile().as_text()


@needs_ffi
@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_kernel_runs_inside_the_compiled_graph(name):
    x = jnp.asarray(_rows((8, 300)))
    assert "softmaxkit_normalize" in _hlo(FUNCTIONS[name], x)
    compiled = jax.jit(FUNCTIONS[name])
    compiled(x).block_until_ready()
    before = smk._dispatch.counts["kernel"]
    compiled(x).block_until_ready()
    assert smk._dispatch.counts["kernel"] == before + 1


@needs_ffi
def test_forced_generic_uses_no_foreign_function():
    x = jnp.asarray(_rows((4, 50)))
    with smk._kernels.generic_only():
        assert "softmaxkit_normalize" not in _hlo(lambda t: smk.softmax(t), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_ulp_bounds_on_jax_arrays_under_jit(name, dtype, axis):
    x = _rows((6, 700, 5), seed=1, scale=20.0, dtype=dtype)
    got = np.asarray(jax.jit(lambda t: FUNCTIONS[name](t, axis=axis))(jnp.asarray(x)))
    assert got.dtype == dtype
    assert_accurate(name, got, x, dtype, axis=axis)


@pytest.mark.parametrize("temperature", [0.3, 2.0])
def test_ulp_bounds_with_a_temperature(temperature):
    x = _rows((4, 3000), seed=2, scale=10.0)
    for name, function in FUNCTIONS.items():
        got = np.asarray(
            jax.jit(lambda t, f=function: f(t, temperature=temperature))(jnp.asarray(x))
        )
        assert_accurate(name, got, x, np.float32, temperature=temperature)


EDGE_ROWS = np.array(
    [
        [1.0, 2.0, 3.0, 0.5],
        [-INF, -INF, -INF, -INF],
        [INF, 1.0, INF, -INF],
        [-INF, 0.0, 1.0, -INF],
        [np.nan, 1.0, 2.0, 0.0],
        [INF, -INF, 2.0, np.nan],
    ]
)


def _edge_softmax(row, temperature):
    """The edge table of the README, written out for one row."""
    row = np.asarray(row, dtype=np.float64)
    if np.isnan(row).any():
        return np.full(row.shape, np.nan)
    if np.isposinf(row).any():
        top = np.isposinf(row)
        return top / top.sum()
    finite = np.isfinite(row)
    if not finite.any():
        return np.zeros(row.shape)
    if temperature == 0:
        top = row == row.max()
        return top / top.sum()
    if np.isinf(temperature):
        return finite / finite.sum()
    e = np.where(finite, np.exp((row - row.max()) / temperature), 0.0)
    return e / e.sum()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0, INF])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_rows(temperature, dtype):
    x = jnp.asarray(EDGE_ROWS.astype(dtype))
    got = np.asarray(jax.jit(lambda t: smk.softmax(t, temperature=temperature))(x))
    expected = np.array([_edge_softmax(row, temperature) for row in EDGE_ROWS])
    np.testing.assert_allclose(got, expected, rtol=2 * np.finfo(dtype).eps, atol=0)
    # log_softmax and logsumexp agree with the NumPy path on every edge row.
    for function in (smk.log_softmax, smk.logsumexp):
        got = np.asarray(jax.jit(lambda t, f=function: f(t, temperature=temperature))(x))
        np.testing.assert_array_equal(
            got, function(EDGE_ROWS.astype(dtype), temperature=temperature)
        )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_the_float32_result_rounded_once(dtype):
    x32 = _rows((16, 257), seed=3, scale=3.0)
    x = jnp.asarray(x32).astype(dtype)
    exact = reference("softmax", np.asarray(x.astype(jnp.float32)))
    got = jax.jit(smk.softmax)(x)
    assert got.dtype == x.dtype
    # within one unit of the half format: the exact value rounded once, or a neighbour
    expected = jnp.asarray(exact.astype(np.float32)).astype(dtype)
    ulp = np.abs(
        np.asarray(expected.astype(jnp.float32))
        - np.asarray(jnp.nextafter(expected, jnp.asarray(2.0, dtype)).astype(jnp.float32))
    )
    diff = np.abs(np.asarray(got.astype(jnp.float32)) - np.asarray(expected.astype(jnp.float32)))
    assert np.all(diff <= ulp)


def test_where_mask():
    x = _rows((5, 40), seed=4).astype(np.float64)
    keep = np.random.default_rng(5).random((5, 40)) < 0.6
    keep[2] = False  # a row with nothing kept
    got = jax.jit(lambda t, k: smk.softmax(t, where=k))(
        jnp.asarray(x, jnp.float32), jnp.asarray(keep)
    )
    expected = np.where(keep, np.exp(x - np.where(keep, x, -INF).max(-1, keepdims=True)), 0)
    total = expected.sum(-1, keepdims=True)
    expected = np.divide(expected, total, out=np.zeros_like(expected), where=total > 0)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=3e-7, atol=0)


# ---------------------------------------------------------------- gradients


def _weighted(function, weights, **options):
    def loss(t):
        out = function(t, **options)
        return jnp.sum(jnp.where(jnp.isfinite(out), out, 0.0) * weights)

    return loss


@pytest.mark.parametrize("temperature", [1.0, 0.7, 3.0])
@pytest.mark.parametrize("axis", [-1, 0])
def test_gradients_match_jax_nn(temperature, axis):
    x = jnp.asarray(_rows((7, 33), seed=6, dtype=np.float64))
    weights = jnp.asarray(_rows((7, 33), seed=7, scale=1.0, dtype=np.float64))
    pairs = [
        (smk.softmax, jax.nn.softmax),
        (smk.log_softmax, jax.nn.log_softmax),
    ]
    for ours, theirs in pairs:
        got = jax.jit(jax.grad(_weighted(ours, weights, temperature=temperature, axis=axis)))(x)
        expected = jax.grad(lambda t, f=theirs: jnp.sum(f(t / temperature, axis=axis) * weights))(x)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    row_weights = jnp.sum(weights, axis=axis)
    got = jax.grad(
        lambda t: jnp.sum(smk.logsumexp(t, temperature=temperature, axis=axis) * row_weights)
    )(x)
    expected = jax.grad(
        lambda t: jnp.sum(jax.nn.logsumexp(t / temperature, axis=axis) * row_weights)
    )(x)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradients_by_numerical_differentiation(name):
    from jax.test_util import check_grads

    x = jnp.asarray(_rows((3, 9), seed=8, scale=2.0, dtype=np.float64))
    function = FUNCTIONS[name]
    check_grads(
        lambda t: function(t, temperature=1.5), (x,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.0, INF])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradients_at_the_edges(name, temperature):
    """0 at -inf entries, on all -inf rows, on rows with a +inf and at T = 0 or inf; NaN
    on rows with NaN; elsewhere the closed form."""
    x = jnp.asarray(EDGE_ROWS)
    weights = jnp.array([1.0, 2.0, 5.0, -1.0])
    function = FUNCTIONS[name]
    loss = _weighted(function, 1.0 if name == "logsumexp" else weights, temperature=temperature)
    grad = np.asarray(jax.jit(jax.grad(loss))(x))
    nan_rows = np.isnan(EDGE_ROWS).any(axis=1)
    assert np.isnan(grad[nan_rows]).all()
    assert np.isfinite(grad[~nan_rows]).all()
    assert np.all(grad[1] == 0) and np.all(grad[2] == 0)  # all -inf; +inf
    assert grad[3, 0] == 0 and grad[3, 3] == 0  # -inf entries
    if temperature in (0.0, INF):
        assert np.all(grad[~nan_rows] == 0)
    else:
        finite = EDGE_ROWS[3, 1:3]
        reference = jax.grad(
            lambda t: (
                jnp.sum(jax.nn.softmax(t / temperature) * weights[1:3])
                if name == "softmax"
                else jnp.sum(jax.nn.log_softmax(t / temperature) * weights[1:3])
                if name == "log_softmax"
                else jax.nn.logsumexp(t / temperature)
            )
        )(jnp.asarray(finite))
        np.testing.assert_allclose(grad[3, 1:3], reference, rtol=1e-12)


def test_masked_entries_get_no_gradient():
    x = jnp.asarray(_rows((4, 10), seed=9, dtype=np.float64))
    keep = jnp.asarray(np.random.default_rng(10).random((4, 10)) < 0.5).at[1].set(False)
    weights = jnp.arange(10.0)
    for function in (smk.softmax, smk.log_softmax, smk.logsumexp):
        grad = jax.grad(
            _weighted(function, weights if function is not smk.logsumexp else 1.0, where=keep)
        )(x)
        grad = np.asarray(grad)
        assert np.all(grad[~np.asarray(keep)] == 0), function.__name__
        assert np.isfinite(grad).all()


def test_half_precision_gradients_keep_the_dtype():
    x = jnp.asarray(_rows((4, 64), seed=11)).astype(jnp.bfloat16)
    grad = jax.grad(lambda t: jnp.sum(smk.softmax(t).astype(jnp.float32) ** 2))(x)
    assert grad.dtype == jnp.bfloat16
    reference = jax.grad(lambda t: jnp.sum(jax.nn.softmax(t) ** 2))(x.astype(jnp.float32))
    # bfloat16 keeps 8 bits: within a few of its units of the largest entry
    scale = float(np.max(np.abs(reference)))
    np.testing.assert_allclose(
        np.asarray(grad.astype(jnp.float32)), reference, rtol=0, atol=4 * 2.0**-8 * scale
    )


# ---------------------------------------------------------------- vmap and sharding


@pytest.mark.parametrize("name", FUNCTIONS)
def test_vmap(name):
    x = _rows((3, 5, 40), seed=12)
    function = FUNCTIONS[name]
    batched = jax.jit(jax.vmap(function))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(batched), function(x, axis=-1))
    # mapped over the last axis, each slice normalized along its first axis
    batched = jax.vmap(lambda t: function(t, axis=0), in_axes=2, out_axes=-1)(jnp.asarray(x))
    assert batched.shape == (5, 40) if name == "logsumexp" else x.shape
    assert_accurate(name, np.asarray(batched), x, np.float32, axis=0)
    keep = np.random.default_rng(13).random(x.shape) < 0.7
    batched = jax.vmap(lambda t, k: function(t, where=k))(jnp.asarray(x), jnp.asarray(keep))
    np.testing.assert_array_equal(np.asarray(batched), function(x, where=keep))


def test_vmap_of_grad():
    x = jnp.asarray(_rows((3, 4, 20), seed=14, dtype=np.float64))
    got = jax.vmap(jax.grad(lambda t: jnp.sum(smk.softmax(t) ** 2)))(x)
    expected = jax.vmap(jax.grad(lambda t: jnp.sum(jax.nn.softmax(t) ** 2)))(x)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def _run_child(code):
    environment = dict(os.environ)
    environment["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    environment.pop("JAX_ENABLE_X64", None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_sharded_arrays_and_no_x64():
    output = _run_child(
        """
        import numpy as np, jax, jax.numpy as jnp, softmaxkit as smk
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        assert not jax.config.jax_enable_x64 and len(jax.devices()) == 2
        x = (np.random.default_rng(0).normal(size=(8, 1000)) * 4).astype(np.float32)
        mesh = Mesh(np.array(jax.devices()), ("rows",))
        sharded = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("rows", None)))
        for f in (smk.softmax, smk.log_softmax, smk.logsumexp):
            got = np.asarray(jax.jit(f)(sharded))
            np.testing.assert_array_equal(got, f(x))
        g = jax.jit(jax.grad(lambda t: jnp.sum(smk.softmax(t) ** 2)))(sharded)
        ref = jax.grad(lambda t: jnp.sum(jax.nn.softmax(t) ** 2))(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(g), np.asarray(ref), rtol=1e-4, atol=1e-9)
        print("ok", jax.jit(smk.softmax)(jnp.asarray(x)).dtype)
        """
    )
    assert output.split() == ["ok", "float32"]


@needs_ffi
def test_subnormal_results_after_xla_started_the_workers():
    # XLA's threads run with flush-to-zero on; the kernel's workers must not inherit it.
    big = jnp.asarray(_rows((512, 4096), seed=20))
    jax.jit(smk.softmax)(big).block_until_ready()
    row = np.array([0.0, -100.0, -95.0, -88.0], np.float32)  # exp(-100) is subnormal
    tiled = np.tile(row, (1 << 19, 1))  # large enough for the worker threads
    for got in (smk.softmax(tiled), np.asarray(jax.jit(smk.softmax)(jnp.asarray(tiled)))):
        assert got[0, 1] > 0
        assert_accurate("softmax", got[:3], tiled[:3], np.float32)
