"""Autograd through the sigmoid family where its formulas split (at 0, at the clamp).

Autograd gives ``abs`` the derivative 0 at 0 and ``where`` the derivative of the branch
it takes, so a formula written in two halves has the right gradient at the split only
if both halves take the same side there. The references are the analytic derivatives
in mpmath: ``sigmoid' = s (1 - s)``, ``log_sigmoid' = 1 - s``, and for binary
cross-entropy with logits ``d/dx = w (-pw t (1 - s) + (1 - t) s)`` and
``d/dt = w (pw softplus(-x) - softplus(x))``; then PyTorch's own functions.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import softmaxkit as smk

POINTS = np.concatenate(
    [[0.0, -0.0, 40.0, -40.0, 1e4, -1e4], np.random.default_rng(20).standard_normal(24) * 6]
)
TARGETS = (0.0, 1.0, 0.3)


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-mpmath.mpf(float(x))))


def _mp_softplus(x):
    x = mpmath.mpf(float(x))
    return max(x, 0) + mpmath.log1p(mpmath.exp(-abs(x)))


def _expected(name, x, t=0.0, pos_weight=1.0, weight=1.0):
    """The analytic derivative(s) at ``x`` (and with respect to ``t`` for the BCE).

    For the BCE each comes with the sum of its terms' magnitudes: the two terms cancel
    (``s - t`` for pw = 1), and the computed value is within rounding of that sum.
    """
    with mpmath.workdps(50):
        s = _mp_sigmoid(x)
        if name == "sigmoid":
            return float(s * (1 - s))
        if name == "log_sigmoid":
            return float(1 - s)
        t, pw, w = (mpmath.mpf(v) for v in (t, pos_weight, weight))
        positive, negative = w * pw * t * (1 - s), w * (1 - t) * s
        positive_t, negative_t = w * pw * _mp_softplus(-x), w * _mp_softplus(x)
        return (
            (float(negative - positive), float(negative + positive)),
            (float(positive_t - negative_t), float(positive_t + negative_t)),
        )


def _close(got, expected, dtype, what):
    """Within 8 ulp of ``expected``, or of the magnitude beside it for the BCE's pairs."""
    got = np.asarray(got, dtype=np.float64)
    pairs = np.asarray(expected, dtype=np.float64)
    expected, magnitude = (pairs[:, 0], pairs[:, 1]) if pairs.ndim == 2 else (pairs, pairs)
    expected = expected.astype(dtype).astype(np.float64)
    eps = np.finfo(dtype).eps
    bound = 8 * eps * np.abs(magnitude) + np.finfo(dtype).smallest_subnormal
    bad = ~(np.abs(got - expected) <= bound)
    assert not bad.any(), f"{what}: at x={POINTS[bad]} got {got[bad]}, expected {expected[bad]}"


def _torch_grads(torch, function, dtype, **options):
    """Gradients of ``function(x, t).sum()`` (``t`` only for the BCE), by torch autograd."""
    x = torch.tensor(POINTS, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    if "target" not in options:
        function(x).sum().backward()
        return x.grad.numpy(), None
    t = torch.full_like(x, options.pop("target")).requires_grad_()
    function(x, t, **options).sum().backward()
    return x.grad.numpy(), t.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_autograd_of_sigmoid_and_log_sigmoid_is_analytic(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for name, ours, theirs in (
        ("sigmoid", smk.sigmoid, torch.sigmoid),
        ("log_sigmoid", smk.log_sigmoid, F.logsigmoid),
    ):
        grad, _ = _torch_grads(torch, ours, dtype)
        _close(grad, [_expected(name, x) for x in POINTS], dtype, f"torch {name}")
        assert grad[0] == grad[1] == {"sigmoid": 0.25, "log_sigmoid": 0.5}[name]
        # PyTorch's s * (1 - s) cancels where s is near 1: compared where it cannot.
        torch_grad, _ = _torch_grads(torch, theirs, dtype)
        near = np.abs(POINTS) <= 2
        np.testing.assert_allclose(grad[near], torch_grad[near], rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.5, 0.75)], ids=["plain", "weighted"])
def test_torch_autograd_of_bce_with_logits_is_analytic(dtype, target, weights):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    pos_weight, weight = weights
    as_tensor = lambda v: torch.tensor(v, dtype=getattr(torch, np.dtype(dtype).name))  # noqa: E731
    options = dict(target=target, reduction="none")
    if weights != (1.0, 1.0):
        options.update(pos_weight=as_tensor(pos_weight), weight=as_tensor(weight))
    grad_x, grad_t = _torch_grads(torch, smk.binary_cross_entropy_with_logits, dtype, **options)
    expected = [_expected("bce", x, target, pos_weight, weight) for x in POINTS]
    _close(grad_x, [e[0] for e in expected], dtype, "torch d/dx")
    _close(grad_t, [e[1] for e in expected], dtype, "torch d/dt")
    if target == 0.0:
        # x = 0, t = 0: sigmoid(0) - 0, PyTorch's 0.5 (this came out 0).
        assert grad_x[0] == grad_x[1] == 0.5 * weight
    if target == 1.0:
        assert grad_x[0] == grad_x[1] == -0.5 * pos_weight * weight
    options = dict(target=target, reduction="none")
    if weights != (1.0, 1.0):
        options.update(pos_weight=as_tensor(pos_weight), weight=as_tensor(weight))
    torch_x, torch_t = _torch_grads(torch, F.binary_cross_entropy_with_logits, dtype, **options)
    scale = 8 * np.finfo(dtype).eps * (np.abs(POINTS) + 1) * (pos_weight + 1) * weight
    assert np.all(np.abs(grad_x - torch_x) <= scale)
    assert np.all(np.abs(grad_t - torch_t) <= scale)


def test_reduction_sum_of_zeros_matches_the_report():
    torch = pytest.importorskip("torch")
    x = torch.zeros(3, 1, requires_grad=True)
    smk.binary_cross_entropy_with_logits(x, torch.zeros(3, 1), reduction="sum").backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 1), 0.5, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jax_grad_of_the_sigmoid_family_is_analytic(dtype):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x = jnp.asarray(POINTS, dtype=dtype)
    for name, function in (("sigmoid", smk.sigmoid), ("log_sigmoid", smk.log_sigmoid)):
        grad = np.asarray(jax.grad(lambda v, f=function: jnp.sum(f(v)))(x))
        _close(grad, [_expected(name, p) for p in POINTS], dtype, f"jax {name}")
    for target in TARGETS:
        t = jnp.full_like(x, target)
        bce = lambda v, w: jnp.sum(  # noqa: E731
            smk.binary_cross_entropy_with_logits(v, w, reduction="none")
        )
        grad_x, grad_t = (np.asarray(g) for g in jax.grad(bce, argnums=(0, 1))(x, t))
        expected = [_expected("bce", p, target) for p in POINTS]
        _close(grad_x, [e[0] for e in expected], dtype, f"jax d/dx, t={target}")
        _close(grad_t, [e[1] for e in expected], dtype, f"jax d/dt, t={target}")


def test_tensorflow_gradient_tape_of_the_sigmoid_family_is_analytic():
    tf = pytest.importorskip("tensorflow")
    x = tf.Variable(POINTS)
    for name, function in (("sigmoid", smk.sigmoid), ("log_sigmoid", smk.log_sigmoid)):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(function(x))
        grad = tape.gradient(total, x).numpy()
        _close(grad, [_expected(name, p) for p in POINTS], np.float64, f"tensorflow {name}")
    t = tf.Variable(tf.zeros_like(x))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(smk.binary_cross_entropy_with_logits(x, t, reduction="none"))
    grad_x, grad_t = (g.numpy() for g in tape.gradient(total, [x, t]))
    expected = [_expected("bce", p, 0.0) for p in POINTS]
    _close(grad_x, [e[0] for e in expected], np.float64, "tensorflow d/dx")
    _close(grad_t, [e[1] for e in expected], np.float64, "tensorflow d/dt")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_gradient_at_its_clamp_is_that_of_log(dtype):
    torch = pytest.importorskip("torch")
    # log(p) = -100 exactly for float64 p = exp(-100): the clamp passes the gradient of
    # log(p) there, as torch.clamp does (maximum gave half of it).
    p_values = np.array([math.exp(-100.0), 0.25, 0.5, 0.9, 1 - 2.0**-20])
    if dtype == np.float32:
        p_values = p_values[1:]
    p = torch.tensor(p_values, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    for target in (1.0, 0.0, 0.3):
        t = torch.full_like(p, target)
        smk.binary_cross_entropy(p, t, reduction="sum").backward()
        with mpmath.workdps(50):
            expected = [
                float(
                    -mpmath.mpf(target) / mpmath.mpf(float(v))
                    + (1 - mpmath.mpf(target)) / (1 - mpmath.mpf(float(v)))
                )
                for v in p.detach().numpy()
            ]
        _close_points = np.abs(p.grad.numpy() - np.asarray(expected, dtype=dtype))
        assert np.all(_close_points <= 8 * np.finfo(dtype).eps * np.abs(expected)), target
        p.grad = None


@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0], [1.0, 1.0, -2.0], [2.0, 2.0, -math.inf]])
def test_kl_divergence_and_entropy_gradients_at_ties(logits):
    # Ties of the maximum (where a max-shift splits its gradient): the analytic
    # d KL / d p_j = p_j (log p_j - log q_j - KL), d KL / d q_j = q_j - p_j and
    # d H / d x_j = -p_j (log p_j + H).
    torch = pytest.importorskip("torch")
    other = [3.0, 3.0, 0.0]
    p_logits = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    q_logits = torch.tensor(other, dtype=torch.float64, requires_grad=True)
    smk.kl_divergence(p_logits, q_logits).backward()
    p = np.asarray(smk.softmax(np.array(logits)))
    q = np.asarray(smk.softmax(np.array(other)))
    log_p = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    kl = np.sum(np.where(p > 0, p * (log_p - np.log(q)), 0.0))
    np.testing.assert_allclose(
        p_logits.grad.numpy(), p * (log_p - np.log(q) - kl), rtol=1e-13, atol=1e-16
    )
    np.testing.assert_allclose(q_logits.grad.numpy(), q - p, rtol=1e-13, atol=1e-16)
    p_logits.grad = None
    smk.entropy(p_logits).backward()
    h = -np.sum(p * log_p)
    np.testing.assert_allclose(p_logits.grad.numpy(), -p * (log_p + h), rtol=1e-13, atol=1e-16)
