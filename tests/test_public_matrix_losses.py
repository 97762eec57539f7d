"""The losses, the softmax gradients, attention and the linear cross-entropy on the ``xp`` matrix.

A part of issue 15's matrix (see ``test_public_matrix.py``): every name of ``COVERED``
runs on every backend of ``tests/matrix.py`` against a reference computed here in NumPy
float64 (the formula written out, with SciPy's ``log_softmax``), never softmaxkit's own
output. Where the library has autograd (PyTorch, JAX) the gradient of the loss is
compared with the closed form ``softmax - onehot`` too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from matrix import Backend, assert_close

import softmaxkit as smk

COVERED = (
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "kl_divergence",
    "softmax_vjp",
    "log_softmax_vjp",
    "softmax_jacobian",
    "attention",
    "linear_cross_entropy",
)

DTYPES = ["float32", "float64"]
# Each reduction once per dtype would double the (JAX-dominated) run time: pairs instead.
DTYPE_REDUCTIONS = [("float32", "none"), ("float64", "sum"), ("float32", "mean"),
                    ("float64", "mean")]

# The TensorFlow adapter (_lib/_tensorflow.py) maps only what the core functions call;
# docs/losses.md lists the libraries of the losses without TensorFlow.
NO_TENSORFLOW = pytest.mark.skip_xp_backend(
    Backend.TENSORFLOW,
    reason="not a backend of this function: the TensorFlow adapter lacks moveaxis, arange "
    "and matmul (a clear TypeError, test_public_matrix.py::test_tensorflow_refused)",
)
RNG = np.random.default_rng(15)
X = RNG.standard_normal((4, 5)) * 2  # 4 rows of 5 classes
TARGET = np.array([3, 0, 4, 1])
TARGET_IGNORED = np.array([3, -100, 4, 1])  # the second row ignored
WEIGHT = np.array([0.5, 2.0, 1.0, 0.25, 1.5])
PROBS = RNG.random((4, 5))
PROBS /= PROBS.sum(-1, keepdims=True)


def _tol(dtype):
    rtol = 2e-6 if dtype == "float32" else 1e-12
    return dict(rtol=rtol, atol=rtol * 1e-2)


def _reduce(rows, reduction, denominator):
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.sum() / denominator


def _index_loss(log_probs, target, reduction, weight=None, ignore_index=-100, smoothing=0.0):
    """PyTorch's class-index loss on log-probabilities, written out in float64."""
    n, k = log_probs.shape
    w = np.ones(k) if weight is None else weight
    active = target != ignore_index
    safe = np.where(active, target, 0)
    picked = log_probs[np.arange(n), safe]
    rows = -(1 - smoothing) * w[safe] * picked - smoothing / k * (w * log_probs).sum(-1)
    rows = np.where(active, rows, 0.0)
    return _reduce(rows, reduction, np.where(active, w[safe], 0.0).sum())


def _probs_loss(log_probs, q, reduction, weight=None, smoothing=0.0):
    """The loss of probability targets: ``-sum(w * q_smoothed * log_probs)`` per row."""
    k = log_probs.shape[-1]
    q = (1 - smoothing) * q + smoothing / k
    if weight is not None:
        q = q * weight
    return _reduce(-(q * log_probs).sum(-1), reduction, log_probs.shape[0])


def _check_shape(result, reduction, rows):
    expected = (rows,) if reduction == "none" else ()
    assert tuple(result.shape) == expected, (tuple(result.shape), expected)


# --------------------------------------------------------------------------------------
# cross_entropy and nll_loss


@NO_TENSORFLOW
@pytest.mark.parametrize(("dtype", "reduction"), DTYPE_REDUCTIONS)
def test_cross_entropy_index_targets(xp, dtype, reduction):
    x = xp.asarray(X, dtype=dtype)
    result = smk.cross_entropy(x, xp.asarray(TARGET), reduction=reduction)
    expected = _index_loss(scipy.special.log_softmax(X, axis=-1), TARGET, reduction)
    _check_shape(result, reduction, 4)
    assert_close(result, expected, xp, dtype=dtype, like=x, **_tol(dtype))


# name: (keyword arguments, the reference's keyword arguments, the target, the reduction)
CROSS_ENTROPY_CASES = {
    "weight_ignore_index": (
        dict(weight=WEIGHT, ignore_index=-100), dict(weight=WEIGHT), TARGET_IGNORED, "mean"),
    "ignore_index_1": (dict(ignore_index=1), dict(ignore_index=1), TARGET, "none"),  # last row
    "label_smoothing": (dict(label_smoothing=0.2), dict(smoothing=0.2), TARGET_IGNORED, "mean"),
    "weight_label_smoothing": (
        dict(weight=WEIGHT, label_smoothing=0.3), dict(weight=WEIGHT, smoothing=0.3),
        TARGET_IGNORED, "none"),
    "probabilities": (dict(), dict(), PROBS, "none"),
    "probabilities_weight_smoothing": (
        dict(weight=WEIGHT, label_smoothing=0.1), dict(weight=WEIGHT, smoothing=0.1), PROBS,
        "mean"),
}


def _case_arrays(xp, case, dtype):
    kwargs, reference_kwargs, target, _ = CROSS_ENTROPY_CASES[case]
    kwargs = dict(kwargs)
    if "weight" in kwargs:
        kwargs["weight"] = xp.asarray(kwargs["weight"], dtype=dtype)
    probabilities = target.dtype.kind == "f"
    target_array = xp.asarray(target, dtype=dtype if probabilities else None)
    return kwargs, reference_kwargs, probabilities, target, target_array


def _reference(log_probs, case, target, reduction):
    _, reference_kwargs, *_ = CROSS_ENTROPY_CASES[case]
    if target.dtype.kind == "f":
        return _probs_loss(log_probs, target, reduction, **reference_kwargs)
    return _index_loss(log_probs, target, reduction, **reference_kwargs)


@NO_TENSORFLOW
@pytest.mark.parametrize("case", list(CROSS_ENTROPY_CASES))
def test_cross_entropy_options(xp, case):
    dtype, reduction = "float64", CROSS_ENTROPY_CASES[case][3]
    kwargs, _, _, target, target_array = _case_arrays(xp, case, dtype)
    x = xp.asarray(X, dtype=dtype)
    result = smk.cross_entropy(x, target_array, reduction=reduction, **kwargs)
    expected = _reference(scipy.special.log_softmax(X, axis=-1), case, target, reduction)
    _check_shape(result, reduction, 4)
    assert_close(result, expected, xp, dtype=dtype, like=x, **_tol(dtype))


@NO_TENSORFLOW
def test_cross_entropy_class_axis_first(xp):
    dtype = "float32"
    # The classes on axis 0 (PyTorch's layouts put them on axis 1).
    x = xp.asarray(X.T.copy(), dtype=dtype)
    result = smk.cross_entropy(x, xp.asarray(TARGET), axis=0, reduction="sum")
    expected = _index_loss(scipy.special.log_softmax(X, axis=-1), TARGET, "sum")
    assert_close(result, expected, xp, dtype=dtype, like=x, **_tol(dtype))


def _closed_form_grad(target, weight, reduction):
    """``(softmax - onehot) * w[target]`` per row, over the mean's divisor."""
    w = np.ones(X.shape[1]) if weight is None else weight
    active = target != -100
    safe = np.where(active, target, 0)
    onehot = np.eye(X.shape[1])[safe]
    row_weight = np.where(active, w[safe], 0.0)[:, None]
    grad = (scipy.special.softmax(X, axis=-1) - onehot) * row_weight
    return grad / row_weight.sum() if reduction == "mean" else grad


@NO_TENSORFLOW
@pytest.mark.parametrize(("dtype", "reduction"), [("float32", "sum"), ("float64", "mean")])
def test_cross_entropy_return_grad(xp, dtype, reduction):
    x = xp.asarray(X, dtype=dtype)
    loss, grad = smk.cross_entropy(
        x, xp.asarray(TARGET_IGNORED), weight=xp.asarray(WEIGHT, dtype=dtype),
        reduction=reduction, return_grad=True,
    )
    log_probs = scipy.special.log_softmax(X, axis=-1)
    expected = _index_loss(log_probs, TARGET_IGNORED, reduction, weight=WEIGHT)
    assert_close(loss, expected, xp, dtype=dtype, like=x, **_tol(dtype))
    assert_close(grad, _closed_form_grad(TARGET_IGNORED, WEIGHT, reduction), xp, dtype=dtype,
                 like=x, **_tol(dtype))


@pytest.mark.xp_backends(Backend.TORCH, Backend.JAX)
def test_cross_entropy_autograd(xp):
    dtype = "float64"  # float32 gradients: test_cross_entropy_return_grad
    weight = xp.asarray(WEIGHT, dtype=dtype)
    target = xp.asarray(TARGET_IGNORED)
    expected = _closed_form_grad(TARGET_IGNORED, WEIGHT, "mean")
    if xp.backend is Backend.TORCH:
        x = xp.asarray(X, dtype=dtype).requires_grad_()
        smk.cross_entropy(x, target, weight=weight).backward()
        grad, like = x.grad, x
    else:
        import jax

        like = xp.asarray(X, dtype=dtype)
        grad = jax.grad(lambda x: smk.cross_entropy(x, target, weight=weight))(like)
    assert_close(grad, expected, xp, dtype=dtype, like=like, **_tol(dtype))


@NO_TENSORFLOW
@pytest.mark.parametrize(("dtype", "reduction"), DTYPE_REDUCTIONS[:3])
def test_nll_loss_index_targets(xp, dtype, reduction):
    log_probs = scipy.special.log_softmax(X, axis=-1)
    lp = xp.asarray(log_probs, dtype=dtype)
    result = smk.nll_loss(lp, xp.asarray(TARGET_IGNORED), weight=xp.asarray(WEIGHT, dtype=dtype),
                          reduction=reduction)
    expected = _index_loss(log_probs.astype(dtype).astype(np.float64), TARGET_IGNORED,
                           reduction, weight=WEIGHT)
    _check_shape(result, reduction, 4)
    assert_close(result, expected, xp, dtype=dtype, like=lp, **_tol(dtype))


@NO_TENSORFLOW
@pytest.mark.parametrize("case", ["ignore_index_1", "label_smoothing",
                                  "probabilities_weight_smoothing"])
def test_nll_loss_options(xp, case):
    dtype = "float64"
    kwargs, _, _, target, target_array = _case_arrays(xp, case, dtype)
    log_probs = scipy.special.log_softmax(X, axis=-1)
    lp = xp.asarray(log_probs, dtype=dtype)
    result = smk.nll_loss(lp, target_array, reduction="sum", **kwargs)
    expected = _reference(log_probs, case, target, "sum")
    assert_close(result, expected, xp, dtype=dtype, like=lp, **_tol(dtype))


@NO_TENSORFLOW
def test_nll_loss_return_grad(xp):
    # The gradient with respect to the log-probabilities: minus the weighted one-hot target.
    lp = xp.asarray(scipy.special.log_softmax(X, axis=-1))
    _, grad = smk.nll_loss(lp, xp.asarray(TARGET_IGNORED), weight=xp.asarray(WEIGHT),
                           reduction="sum", return_grad=True)
    active = TARGET_IGNORED != -100
    expected = -np.eye(5)[np.where(active, TARGET_IGNORED, 0)] * np.where(
        active, WEIGHT[np.where(active, TARGET_IGNORED, 0)], 0.0)[:, None]
    assert_close(grad, expected, xp, dtype="float64", like=lp, rtol=1e-15)


# --------------------------------------------------------------------------------------
# the binary cross-entropies


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


B_LOGITS = np.array([[-3.0, -0.5, 0.0, 0.75], [1.5, 4.0, -20.0, 30.0], [0.25, -1.0, 2.0, -6.0]])
B_TARGET = np.array([[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.25, 0.0], [0.9, 0.1, 1.0, 0.0]])
B_WEIGHT = np.array([[0.5], [2.0], [1.0]])  # one per row, broadcast
POS_WEIGHT = np.array([1.0, 3.0, 0.5, 2.0])  # one per class (last axis)


@pytest.mark.parametrize(("dtype", "reduction", "weighted"), [
    ("float32", "none", False), ("float64", "sum", True), ("float32", "mean", True)])
def test_binary_cross_entropy_with_logits(xp, dtype, reduction, weighted):
    x = xp.asarray(B_LOGITS, dtype=dtype)
    kwargs = {}
    pos, w = 1.0, 1.0
    if weighted:
        kwargs = dict(pos_weight=xp.asarray(POS_WEIGHT, dtype=dtype),
                      weight=xp.asarray(B_WEIGHT, dtype=dtype))
        pos, w = POS_WEIGHT, B_WEIGHT
    result = smk.binary_cross_entropy_with_logits(x, xp.asarray(B_TARGET, dtype=dtype),
                                                  reduction=reduction, **kwargs)
    t = B_TARGET
    elements = -w * (pos * t * _log_sigmoid(B_LOGITS) + (1 - t) * _log_sigmoid(-B_LOGITS))
    expected = _reduce(elements, reduction, elements.size)
    assert tuple(result.shape) == (B_LOGITS.shape if reduction == "none" else ())
    assert_close(result, expected, xp, dtype=dtype, like=x, **_tol(dtype))


B_PROBS = np.array([[0.0, 0.5, 1e-10, 0.3], [1.0, 0.99, 0.01, 0.75]])  # 0 and 1: clamped
B_PROBS_TARGET = np.array([[1.0, 1.0, 0.0, 0.4], [1.0, 0.0, 0.2, 1.0]])


@pytest.mark.parametrize(("dtype", "reduction"), DTYPE_REDUCTIONS[:3])
def test_binary_cross_entropy(xp, dtype, reduction):
    p = xp.asarray(B_PROBS, dtype=dtype)
    weight = np.array([1.0, 0.5, 2.0, 1.0])
    result = smk.binary_cross_entropy(p, xp.asarray(B_PROBS_TARGET, dtype=dtype),
                                      weight=xp.asarray(weight, dtype=dtype), reduction=reduction)
    probs = B_PROBS.astype(dtype).astype(np.float64)
    t = B_PROBS_TARGET
    with np.errstate(divide="ignore"):  # log(0): clamped at -100 as in PyTorch
        log_p = np.maximum(np.log(probs), -100.0)
        log_not_p = np.maximum(np.log1p(-probs), -100.0)
    elements = -weight * (t * log_p + (1 - t) * log_not_p)
    expected = _reduce(elements, reduction, elements.size)
    assert_close(result, expected, xp, dtype=dtype, like=p, **_tol(dtype))


# --------------------------------------------------------------------------------------
# kl_divergence


Q_LOGITS = RNG.standard_normal((4, 5))


@pytest.mark.parametrize(("dtype", "axis"), [("float32", -1), ("float64", 0)])
def test_kl_divergence(xp, dtype, axis):
    p, q = xp.asarray(X, dtype=dtype), xp.asarray(Q_LOGITS, dtype=dtype)
    result = smk.kl_divergence(p, q, axis=axis)
    log_p = scipy.special.log_softmax(X, axis=axis)
    log_q = scipy.special.log_softmax(Q_LOGITS, axis=axis)
    expected = (np.exp(log_p) * (log_p - log_q)).sum(axis=axis)
    assert_close(result, expected, xp, dtype=dtype, like=p, **_tol(dtype))


def test_kl_divergence_zero_probability(xp):
    # A class where p is 0 adds nothing; one where only q is 0 makes the divergence inf.
    p_logits = np.array([[0.0, -math.inf, 1.0], [0.0, 0.0, 1.0]])
    q_logits = np.array([[1.0, 2.0, 0.5], [0.5, -math.inf, 0.0]])
    result = smk.kl_divergence(xp.asarray(p_logits), xp.asarray(q_logits))
    log_p = scipy.special.log_softmax(np.array([0.0, 1.0]))  # the classes where p > 0
    log_q = scipy.special.log_softmax(q_logits[0])[[0, 2]]
    expected = np.array([(np.exp(log_p) * (log_p - log_q)).sum(), math.inf])
    assert_close(result, expected, xp, dtype="float64")


# --------------------------------------------------------------------------------------
# the softmax gradients


G = RNG.standard_normal((4, 5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_vjp(xp, dtype):
    y = scipy.special.softmax(X, axis=-1).astype(dtype)
    probs = xp.asarray(y)
    result = smk.softmax_vjp(probs, xp.asarray(G, dtype=dtype))
    y, g = y.astype(np.float64), G.astype(dtype).astype(np.float64)
    expected = y * (g - (g * y).sum(-1, keepdims=True))
    assert_close(result, expected, xp, dtype=dtype, like=probs, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_vjp(xp, dtype):
    log_y = scipy.special.log_softmax(X, axis=-1).astype(dtype)
    log_probs = xp.asarray(log_y)
    result = smk.log_softmax_vjp(log_probs, xp.asarray(G, dtype=dtype), axis=-1)
    g = G.astype(dtype).astype(np.float64)
    expected = g - np.exp(log_y.astype(np.float64)) * g.sum(-1, keepdims=True)
    assert_close(result, expected, xp, dtype=dtype, like=log_probs, **_tol(dtype))


@NO_TENSORFLOW
@pytest.mark.parametrize(("dtype", "axis"), [("float32", -1), ("float64", 0)])
def test_softmax_jacobian(xp, dtype, axis):
    x = xp.asarray(X, dtype=dtype)
    result = smk.softmax_jacobian(x, axis=axis)
    y = np.moveaxis(scipy.special.softmax(X.astype(dtype).astype(np.float64), axis=axis), axis, -1)
    expected = np.stack([np.diag(row) - np.outer(row, row) for row in y])
    assert_close(result, expected, xp, dtype=dtype, like=x, **_tol(dtype))


# --------------------------------------------------------------------------------------
# attention


Q = RNG.standard_normal((2, 3, 4))
K = RNG.standard_normal((2, 5, 4))
V = RNG.standard_normal((2, 5, 3))
MASK = RNG.random((3, 5)) > 0.4
MASK[1] = False  # a query attending no key gets zeros


def _attention(q, k, v, allowed):
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    scores = np.where(allowed, scores, -np.inf)
    top = np.max(scores, axis=-1, keepdims=True)
    weights = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = weights.sum(-1, keepdims=True)
    return (weights / np.where(total == 0, 1.0, total)) @ v


@NO_TENSORFLOW
@pytest.mark.parametrize(("dtype", "variant"), [("float32", "plain"), ("float64", "blocks"),
                                                ("float32", "causal"), ("float64", "mask")])
def test_attention(xp, dtype, variant):
    q, k, v = (xp.asarray(a, dtype=dtype) for a in (Q, K, V))
    kwargs, allowed = {}, np.ones((3, 5), dtype=bool)
    if variant == "blocks":
        kwargs = dict(block_size=2)
    elif variant == "causal":
        kwargs, allowed = dict(causal=True, block_size=2), np.tri(3, 5, dtype=bool)
    elif variant == "mask":
        kwargs, allowed = dict(mask=xp.asarray(MASK)), MASK
    result = smk.attention(q, k, v, **kwargs)
    expected = _attention(*(a.astype(dtype).astype(np.float64) for a in (Q, K, V)), allowed)
    assert_close(result, expected, xp, dtype=dtype, like=q, **_tol(dtype))


# --------------------------------------------------------------------------------------
# linear_cross_entropy


HIDDEN = RNG.standard_normal((6, 4))
EMBEDDING = RNG.standard_normal((8, 4))  # V = 8 classes of D = 4 features
BIAS = RNG.standard_normal(8)
LCE_TARGET = np.array([0, 7, -100, 3, 2, 7])


def _linear_reference(dtype, reduction, bias=None, smoothing=0.0):
    hidden, embedding = (a.astype(dtype).astype(np.float64) for a in (HIDDEN, EMBEDDING))
    logits = hidden @ embedding.T + (0.0 if bias is None else bias.astype(dtype))
    log_probs = scipy.special.log_softmax(logits, axis=-1)
    loss = _index_loss(log_probs, LCE_TARGET, reduction, smoothing=smoothing)
    active = LCE_TARGET != -100
    dlogits = (np.exp(log_probs) - np.eye(8)[np.where(active, LCE_TARGET, 0)]) * active[:, None]
    if reduction == "mean":
        dlogits /= active.sum()
    return loss, dlogits @ embedding, dlogits.T @ hidden, dlogits.sum(0)


# linear_cross_entropy checks its targets and each block's maximum with bool(): it computes
# a Dask array (test_linear_cross_entropy_computes_dask); the values are right.
@NO_TENSORFLOW
@pytest.mark.allow_dask_compute
@pytest.mark.parametrize(("dtype", "reduction"), DTYPE_REDUCTIONS[:3])
def test_linear_cross_entropy(xp, dtype, reduction):
    hidden = xp.asarray(HIDDEN, dtype=dtype)
    # Once in two chunks of the vocabulary (the merged state), else in one; not on JAX,
    # where the merge's ops would take seconds to compile (the same code runs on the rest).
    chunk_size = 4 if reduction == "none" and xp.backend is not Backend.JAX else None
    result = smk.linear_cross_entropy(hidden, xp.asarray(EMBEDDING, dtype=dtype),
                                      xp.asarray(LCE_TARGET), reduction=reduction,
                                      chunk_size=chunk_size)
    expected, *_ = _linear_reference(dtype, reduction)
    _check_shape(result, reduction, 6)
    assert_close(result, expected, xp, dtype=dtype, like=hidden, **_tol(dtype))


@NO_TENSORFLOW
@pytest.mark.allow_dask_compute
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_cross_entropy_smoothing_bias_grad(xp, dtype):
    hidden = xp.asarray(HIDDEN, dtype=dtype)
    loss, grads = smk.linear_cross_entropy(
        hidden, xp.asarray(EMBEDDING, dtype=dtype), xp.asarray(LCE_TARGET),
        bias=xp.asarray(BIAS, dtype=dtype), return_grad=True,
    )
    expected = _linear_reference(dtype, "mean", bias=BIAS)
    assert len(grads) == 3
    assert_close(loss, expected[0], xp, dtype=dtype, like=hidden, **_tol(dtype))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else _tol(dtype)
    for grad, reference in zip(grads, expected[1:], strict=True):
        assert_close(grad, reference, xp, dtype=dtype, like=hidden, **tol)
    smoothed = smk.linear_cross_entropy(hidden, xp.asarray(EMBEDDING, dtype=dtype),
                                        xp.asarray(LCE_TARGET), label_smoothing=0.2,
                                        reduction="sum")
    assert_close(smoothed, _linear_reference(dtype, "sum", smoothing=0.2)[0], xp, dtype=dtype,
                 like=hidden, **_tol(dtype))


@pytest.mark.xp_backends(Backend.DASK)
@pytest.mark.xfail_xp_backend(
    Backend.DASK,
    reason="linear_cross_entropy computes on Dask: bool(xp.any(bad)) in _validate and "
    "bool(xp.all(xp.isfinite(maximum))) in _block_state (documented for NumPy and PyTorch)",
)
def test_linear_cross_entropy_computes_dask(xp):
    smk.linear_cross_entropy(xp.asarray(HIDDEN), xp.asarray(EMBEDDING), xp.asarray(LCE_TARGET))


@pytest.mark.xp_backends(Backend.TORCH)
def test_linear_cross_entropy_torch_autograd(xp):
    hidden = xp.asarray(HIDDEN).requires_grad_()
    embedding = xp.asarray(EMBEDDING).requires_grad_()
    smk.linear_cross_entropy(hidden, embedding, xp.asarray(LCE_TARGET)).backward()
    _, grad_hidden, grad_embedding, _ = _linear_reference("float64", "mean")
    assert_close(hidden.grad, grad_hidden, xp, dtype="float64", rtol=1e-12, atol=1e-14)
    assert_close(embedding.grad, grad_embedding, xp, dtype="float64", rtol=1e-12, atol=1e-14)
