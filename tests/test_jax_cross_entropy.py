"""cross_entropy of JAX arrays with its closed-form gradient (``losses/_jax_grad.py``):
``jax.grad`` (under ``jit`` and ``vmap``, of second order too) against the loss written
with ``jax.nn`` in float64, and the gradients of weights, probability targets and
per-row temperatures."""

from __future__ import annotations

import numpy as np
import pytest

import softmaxkit as smk

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from softmaxkit.losses import _jax_grad  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _x64():
    """float64 arrays for this module's tests, the setting restored afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def custom_gradient(monkeypatch):
    """How often the closed-form road was taken."""
    runs = []
    original = _jax_grad.cross_entropy

    def spy(*args, **kwargs):
        runs.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(_jax_grad, "cross_entropy", spy)
    return runs


def _data(n_rows=12, n_classes=9, seed=0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(3 * rng.standard_normal((n_rows, n_classes)))
    target = rng.integers(0, n_classes, n_rows)
    target[::4] = -100
    return logits, jnp.asarray(target)


def _reference(
    x,
    target,
    *,
    weight=None,
    smoothing=0.0,
    temperature=1.0,
    z_loss=0.0,
    reduction="mean",
    softcap=None,
):
    """PyTorch's cross-entropy semantics written with jax.nn (ignore_index -100)."""
    if softcap is not None:
        x = softcap * jnp.tanh(x / softcap)
    x = x / temperature
    n_classes = x.shape[-1]
    log_p = jax.nn.log_softmax(x, axis=-1)
    active = target != -100
    safe = jnp.where(active, target, 0)
    w = jnp.ones(n_classes) if weight is None else weight
    row_weight = jnp.where(active, w[safe], 0.0)
    picked = jnp.take_along_axis(log_p, safe[:, None], 1)[:, 0]
    smooth = jnp.sum(w * log_p, axis=-1) / n_classes
    row = -(1 - smoothing) * row_weight * picked - smoothing * jnp.where(active, smooth, 0.0)
    row = row + z_loss * row_weight * jax.nn.logsumexp(x, axis=-1) ** 2
    if reduction == "none":
        return row
    if reduction == "sum":
        return row.sum()
    return row.sum() / row_weight.sum()


OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True},
    {"smoothing": 0.1},
    {"smoothing": 0.2, "weight": True, "reduction": "sum"},
    {"temperature": 0.7, "z_loss": 1e-2},
    {"softcap": 4.0, "z_loss": 1e-3},
]


def _ours_and_reference(options, n_classes):
    options = dict(options)
    if options.get("weight") is True:
        options["weight"] = jnp.linspace(0.5, 2.0, n_classes)
    ours_options = {("label_smoothing" if k == "smoothing" else k): v for k, v in options.items()}

    def ours(x, target):
        return smk.cross_entropy(x, target, **ours_options)

    def reference(x, target):
        return _reference(x, target, **options)

    return ours, reference


def _weighted(function, shape_of_loss):
    """sum(f(x) * u) for a fixed u: a gradient that tests the upstream's use per row."""
    u = jnp.linspace(0.5, 1.5, int(np.prod(shape_of_loss))).reshape(shape_of_loss)
    return lambda x, t: jnp.sum(function(x, t) * u)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_gradient_matches_jax_nn(options, jit, custom_gradient):
    logits, target = _data()
    ours, reference = _ours_and_reference(options, logits.shape[1])
    shape = () if options.get("reduction") != "none" else (logits.shape[0],)
    ours, reference = _weighted(ours, shape), _weighted(reference, shape)
    grad_ours, grad_reference = jax.grad(ours), jax.grad(reference)
    if jit:
        grad_ours, grad_reference = jax.jit(grad_ours), jax.jit(grad_reference)
    np.testing.assert_allclose(ours(logits, target), reference(logits, target), rtol=1e-13)
    np.testing.assert_allclose(
        grad_ours(logits, target), grad_reference(logits, target), rtol=1e-12, atol=1e-15
    )
    assert custom_gradient


def test_float32_gradient_keeps_the_dtype():
    logits, target = _data()
    logits32 = logits.astype(jnp.float32)
    grad = jax.jit(jax.grad(lambda x: smk.cross_entropy(x, target)))(logits32)
    expected = jax.grad(lambda x: _reference(x, target))(logits)
    assert grad.dtype == jnp.float32
    np.testing.assert_allclose(grad, expected, rtol=2e-6, atol=1e-7)


def test_gradients_of_weight_probabilities_and_temperature():
    logits, target = _data()
    n_rows, n_classes = logits.shape
    weight = jnp.linspace(0.5, 2.0, n_classes)
    grad_w = jax.grad(lambda w: smk.cross_entropy(logits, target, weight=w))(weight)
    expected_w = jax.grad(lambda w: _reference(logits, target, weight=w))(weight)
    np.testing.assert_allclose(grad_w, expected_w, rtol=1e-12, atol=1e-15)

    probabilities = jax.nn.softmax(
        jnp.asarray(np.random.default_rng(2).normal(size=(n_rows, n_classes)))
    )
    grad_q = jax.jit(jax.grad(lambda q: smk.cross_entropy(logits, q)))(probabilities)
    expected_q = -jax.nn.log_softmax(logits, axis=-1) / n_rows
    np.testing.assert_allclose(grad_q, expected_q, rtol=1e-12, atol=1e-15)

    temperature = jnp.linspace(0.5, 2.0, n_rows)[:, None]

    def ours(t):
        return smk.cross_entropy(logits, target, temperature=t, reduction="sum")

    def theirs(t):
        return _reference(logits, target, temperature=t, reduction="sum")

    np.testing.assert_allclose(
        jax.grad(ours)(temperature), jax.grad(theirs)(temperature), rtol=1e-12, atol=1e-15
    )
    both = jax.grad(lambda x, t: smk.cross_entropy(x, target, temperature=t), argnums=(0, 1))
    reference_both = jax.grad(lambda x, t: _reference(x, target, temperature=t), argnums=(0, 1))
    for a, b in zip(both(logits, temperature), reference_both(logits, temperature), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_second_derivative_and_vmap():
    logits, target = _data(n_rows=5, n_classes=4)

    def hessian_vector(loss):
        grad = jax.grad(loss)
        return jax.grad(lambda x: jnp.sum(grad(x) * jnp.cos(x)))(logits)

    ours = hessian_vector(lambda x: smk.cross_entropy(x, target, z_loss=1e-2))
    theirs = hessian_vector(lambda x: _reference(x, target, z_loss=1e-2))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)

    batch = jnp.stack([logits, 2 * logits, -logits])
    ours = jax.vmap(jax.grad(lambda x: smk.cross_entropy(x, target)))(batch)
    theirs = jax.vmap(jax.grad(lambda x: _reference(x, target)))(batch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_edges_keep_a_finite_gradient():
    inf = float("inf")
    logits = jnp.asarray([[0.0, -inf, 1.0], [-inf, -inf, -inf], [2.0, 1.0, -inf], [1.0, 0.0, 3.0]])
    target = jnp.asarray([1, 0, 0, -100])
    loss, grad = jax.value_and_grad(lambda x: smk.cross_entropy(x, target, reduction="sum"))(logits)
    expected, expected_grad = smk.cross_entropy(
        np.asarray(logits), np.asarray(target), reduction="sum", return_grad=True
    )
    assert float(loss) == float(expected) == inf
    # The generic closed form against the NumPy path's fused pass: the same to rounding.
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-15, atol=0)
    assert bool(jnp.isfinite(grad).all())
