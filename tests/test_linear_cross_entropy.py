"""linear_cross_entropy against PyTorch's cross_entropy on the materialised logits."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from optional import requires_torch, torch

import softmaxkit as smk

F = None if torch is None else torch.nn.functional


def _problem(n_rows, features, vocabulary, seed=0, dtype=np.float64, ignored=(3,)):
    rng = np.random.default_rng(seed)
    hidden = (rng.standard_normal((n_rows, features)) * 2).astype(dtype)
    weight = rng.standard_normal((vocabulary, features)).astype(dtype)
    bias = rng.standard_normal(vocabulary).astype(dtype)
    target = rng.integers(0, vocabulary, n_rows)
    target[[i for i in ignored if i < n_rows]] = -100
    return hidden, weight, bias, target


def _materialised(
    hidden,
    weight,
    bias,
    target,
    *,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    ignore_index=-100,
):
    """The loss and its gradients through PyTorch autograd on the full logits."""
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(weight, requires_grad=True)
    b = None if bias is None else torch.tensor(bias, requires_grad=True)
    t = torch.tensor(target)
    logits = h @ w.T + (0 if b is None else b)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    rows = F.cross_entropy(
        logits, t, reduction="none", ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    valid = t != ignore_index
    rows = rows + z_loss * torch.logsumexp(logits, -1) ** 2 * valid
    if reduction == "none":
        loss = rows
    elif reduction == "sum":
        loss = rows.sum()
    else:
        loss = rows.sum() / valid.sum()
    loss.sum().backward()
    grads = (h.grad.numpy(), w.grad.numpy()) + (() if b is None else (b.grad.numpy(),))
    return loss.detach().numpy(), grads


OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.2},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 3.0, "reduction": "sum"},
]


@requires_torch
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64])
def test_numpy_float64_matches_the_materialised_loss(options, chunk_size):
    hidden, weight, bias, target = _problem(21, 8, 50)
    loss, grads = smk.linear_cross_entropy(
        hidden, weight, target, bias=bias, chunk_size=chunk_size, return_grad=True, **options
    )
    expected, expected_grads = _materialised(hidden, weight, bias, target, **options)
    np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-13)
    assert len(grads) == 3
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@requires_torch
@pytest.mark.parametrize("options", OPTIONS[:4])
def test_torch_autograd_function(options):
    hidden, weight, bias, target = _problem(33, 16, 300, seed=1, dtype=np.float32)
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(weight, requires_grad=True)
    b = torch.tensor(bias, requires_grad=True)
    loss = smk.linear_cross_entropy(h, w, torch.tensor(target), bias=b, chunk_size=37, **options)
    assert loss.dtype == torch.float32
    cotangent = torch.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape)
    (loss * cotangent).sum().backward()
    # Reference: float64 materialised logits, the same cotangent.
    h64, w64, b64 = (
        torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (hidden, weight, bias)
    )
    ref = F.cross_entropy(h64 @ w64.T + b64, torch.tensor(target), **options)
    (ref * cotangent.double()).sum().backward()
    torch.testing.assert_close(loss.double(), ref, rtol=2e-6, atol=2e-6)
    for got, want in ((h.grad, h64.grad), (w.grad, w64.grad), (b.grad, b64.grad)):
        # The float32 products of the gradient round at about D * u * |g| * |w|.
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=5e-6)


@requires_torch
def test_float32_within_float32_bounds_of_float64():
    hidden, weight, bias, target = _problem(64, 32, 1000, seed=2, dtype=np.float32)
    loss, (grad_hidden, grad_weight) = smk.linear_cross_entropy(
        hidden, weight, target, return_grad=True, chunk_size=128
    )
    assert loss.dtype == np.float32 and grad_weight.dtype == np.float32
    expected, (want_hidden, want_weight) = _materialised(
        hidden.astype(np.float64), weight.astype(np.float64), None, target
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(grad_hidden, want_hidden, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad_weight, want_weight, rtol=1e-4, atol=1e-7)


@requires_torch
def test_all_ignored_mean_is_zero_not_nan():
    hidden, weight, _, target = _problem(4, 3, 5, ignored=(0, 1, 2, 3))
    loss, (grad_hidden, grad_weight) = smk.linear_cross_entropy(
        hidden, weight, target, return_grad=True
    )
    assert float(loss) == 0.0
    assert not grad_hidden.any() and not grad_weight.any()
    h = torch.tensor(hidden, requires_grad=True)
    torch_loss = smk.linear_cross_entropy(h, torch.tensor(weight), torch.tensor(target))
    torch_loss.backward()
    assert torch_loss.item() == 0.0 and not h.grad.any()


@requires_torch
def test_leading_batch_dimensions_and_reduction_none():
    hidden, weight, bias, target = _problem(12, 4, 9, seed=3)
    rows = smk.linear_cross_entropy(
        hidden.reshape(3, 4, 4), weight, target.reshape(3, 4), reduction="none"
    )
    expected, _ = _materialised(hidden, weight, None, target, reduction="none")
    assert rows.shape == (3, 4)
    np.testing.assert_allclose(rows.ravel(), expected, rtol=1e-13)
    assert rows.ravel()[3] == 0.0


def test_large_logits_do_not_overflow():
    hidden = np.array([[1e3, 0.0], [0.0, -1e3]])
    weight = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    target = np.array([0, 2])
    loss = smk.linear_cross_entropy(hidden, weight, target, chunk_size=1, reduction="none")
    np.testing.assert_allclose(loss, [1e3, 1e3 + np.log(2.0)], rtol=1e-15)


def test_errors():
    hidden, weight, _, target = _problem(4, 3, 5)
    with pytest.raises(ValueError, match="reduction must be"):
        smk.linear_cross_entropy(hidden, weight, target, reduction="avg")
    with pytest.raises(ValueError, match="must match weight's second axis"):
        smk.linear_cross_entropy(hidden, weight[:, :2], target)
    with pytest.raises(ValueError, match="outside \\[0, 5\\)"):
        smk.linear_cross_entropy(hidden, weight, np.array([0, 1, 5, 2]))
    with pytest.raises(TypeError, match="target must hold integer"):
        smk.linear_cross_entropy(hidden, weight, target.astype(float))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        smk.linear_cross_entropy(hidden, weight, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match="chunk_size must be > 0, got 0"):
        smk.linear_cross_entropy(hidden, weight, target, chunk_size=0)
    # As in cross_entropy: 1.5 is refused, not taken as class 1.
    for bad in (1.5, True, "1"):
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            smk.linear_cross_entropy(hidden, weight, target, ignore_index=bad)


def _extra_peak(n_rows, features, vocabulary, chunk_size):
    rng = np.random.default_rng(4)
    hidden = rng.standard_normal((n_rows, features), dtype=np.float32)
    weight = rng.standard_normal((vocabulary, features), dtype=np.float32) * 0.05
    target = rng.integers(0, vocabulary, n_rows)
    # A first small call imports what the function needs; that is not working memory.
    smk.linear_cross_entropy(hidden[:2], weight[:3], target[:2] % 3, return_grad=True)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        loss, grads = smk.linear_cross_entropy(
            hidden, weight, target, return_grad=True, chunk_size=chunk_size
        )
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert np.isfinite(loss)
    outputs = sum(g.nbytes for g in grads)
    return peak - outputs


def test_memory_small():
    n_rows, features, vocabulary = 512, 64, 32768
    extra = _extra_peak(n_rows, features, vocabulary, 128)
    logits = n_rows * vocabulary * 4
    assert extra < 0.1 * logits


@pytest.mark.slow
def test_memory_llama_head():
    n_rows, features, vocabulary = 8192, 1024, 128256
    extra = _extra_peak(n_rows, features, vocabulary, None)
    logits = n_rows * vocabulary * 4  # 4.2 GB
    assert extra < 0.1 * logits


@requires_torch
@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_values_gradients_and_memory():
    generator = torch.Generator().manual_seed(8)
    # The language-model head: the logits alone would be 4.2 GB.
    n_rows, features, vocabulary = 8192, 1024, 128256
    hidden = torch.randn(n_rows, features, generator=generator).cuda().requires_grad_(True)
    weight = (torch.randn(vocabulary, features, generator=generator) * 0.05).cuda()
    weight.requires_grad_(True)
    target = torch.randint(0, vocabulary, (n_rows,), generator=generator).cuda()
    target[::7] = -100
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = smk.linear_cross_entropy(hidden, weight, target, label_smoothing=0.1)
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base - hidden.nbytes - weight.nbytes
    assert extra < 0.1 * n_rows * vocabulary * 4
    h64 = hidden.detach().double().requires_grad_(True)
    w64 = weight.detach().double().requires_grad_(True)
    ref = F.cross_entropy(h64 @ w64.T, target, label_smoothing=0.1)
    ref.backward()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden.grad.double(), h64.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------
# The compiled road (NumPy and CPU torch, float32/float64): float32 blocks through the
# kernel, products in the input dtype.

U32 = 2.0**-24


def _float32_bounds(hidden, weight, bias, target, scale, label_smoothing=0.0):
    """First-order worst-case error bounds of the float32 loss and gradients.

    The reference is the float64 computation on the same float32 inputs. Sources of
    error: each float32 logit is a product of length D (error at most
    ``gamma_D * |h_i| . |w_j|``), which moves each softmax entry by at most
    ``2 p_ij max_k |dz_ik|`` and the row's loss by ``2 max_k |dz_ik|``; each entry of
    dlogits rounds to float32 (a few ulp, 8u allowed); the products that form the
    gradients sum V (grad_hidden) or N (grad_weight) float32 terms, at most
    ``K u sum |terms|`` each. ``M = scale (p + onehot + e / V)`` bounds |dlogits|.
    """
    h, w = np.abs(hidden.astype(np.float64)), np.abs(weight.astype(np.float64))
    n_rows, features = hidden.shape
    vocabulary = weight.shape[0]
    gamma = features * U32 / (1 - features * U32)
    logits = hidden.astype(np.float64) @ weight.astype(np.float64).T
    if bias is not None:
        logits += bias
    dz = gamma * (h @ w.T).max(axis=1) + (0 if bias is None else U32 * np.abs(bias).max())
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    valid = target != -100
    onehot[np.flatnonzero(valid), target[valid]] = 1.0
    m = scale[:, None] * (p + onehot + label_smoothing / vocabulary)
    entry = (2 * dz + 8 * U32)[:, None] * m
    bound_hidden = (entry + vocabulary * U32 * m) @ w
    bound_weight = (entry + n_rows * U32 * m).T @ h
    bound_bias = (entry + n_rows * U32 * m).sum(axis=0)
    return 2 * dz + 8 * U32, bound_hidden, bound_weight, bound_bias


@requires_torch
@pytest.mark.parametrize("chunk_size", [None, 100])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"reduction": "sum"}])
def test_float32_gradients_within_their_error_bound(chunk_size, options):
    hidden, weight, bias, target = _problem(300, 48, 1000, seed=5, dtype=np.float32)
    loss, grads = smk.linear_cross_entropy(
        hidden, weight, target, bias=bias, chunk_size=chunk_size, return_grad=True, **options
    )
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    expected, expected_grads = _materialised(
        *(a.astype(np.float64) for a in (hidden, weight, bias)), target, **options
    )
    valid = target != -100
    scale = valid / (valid.sum() if options.get("reduction", "mean") == "mean" else 1.0)
    row_bound, *bounds = _float32_bounds(
        hidden, weight, bias, target, scale, options.get("label_smoothing", 0.0)
    )
    loss_bound = (row_bound * scale).sum() + 4 * U32 * abs(expected)
    assert abs(float(loss) - expected) <= loss_bound
    for got, want, bound in zip(grads, expected_grads, bounds, strict=True):
        error = np.abs(got.astype(np.float64) - want)
        assert np.all(error <= bound), float(np.max(error / bound))
        # The bound is not vacuous: the gradients are far from 0 compared with it.
        assert np.median(bound) < 1e-2 * np.median(np.abs(want))


@requires_torch
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("chunk_size", [None, 300])
def test_torch_autograd_compiled_float32(reduction, chunk_size):
    hidden, weight, bias, target = _problem(200, 40, 1000, seed=6, dtype=np.float32)
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(weight, requires_grad=True)
    b = torch.tensor(bias, requires_grad=True)
    loss = smk.linear_cross_entropy(
        h, w, torch.tensor(target), bias=b, reduction=reduction, chunk_size=chunk_size
    )
    cotangent = torch.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape)
    (loss * cotangent).sum().backward()
    expected, expected_grads = _materialised(
        *(a.astype(np.float64) for a in (hidden, weight, bias)), target, reduction="none"
    )
    valid = target != -100
    weights = cotangent.double().numpy() if reduction == "none" else 0.5 * np.ones(1)
    scale = valid * weights / (valid.sum() if reduction == "mean" else 1.0)
    # Reference gradients for the cotangent: dlogits rows scaled, from float64 autograd.
    h64, w64, b64 = (
        torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (hidden, weight, bias)
    )
    rows = F.cross_entropy(h64 @ w64.T + b64, torch.tensor(target), reduction="none")
    (rows * torch.tensor(scale)).sum().backward()
    row_bound, *bounds = _float32_bounds(hidden, weight, bias, target, scale)
    if reduction == "none":
        assert loss.shape == (200,) and float(loss.detach()[3]) == 0.0
        error = np.abs(loss.detach().double().numpy() - expected)
        assert np.all(error <= row_bound + 4 * U32 * np.abs(expected))
    for got, want, bound in zip((h.grad, w.grad, b.grad), (h64.grad, w64.grad, b64.grad), bounds):
        error = np.abs(got.double().numpy() - want.numpy())
        assert np.all(error <= bound), float(np.max(error / bound))


@requires_torch
def test_torch_only_hidden_needs_a_gradient():
    hidden, weight, _, target = _problem(50, 8, 64, seed=7, dtype=np.float32)
    h = torch.tensor(hidden, requires_grad=True)
    loss = smk.linear_cross_entropy(h, torch.tensor(weight), torch.tensor(target))
    loss.backward()
    h64 = torch.tensor(hidden, dtype=torch.float64, requires_grad=True)
    F.cross_entropy(
        h64 @ torch.tensor(weight, dtype=torch.float64).T, torch.tensor(target)
    ).backward()
    torch.testing.assert_close(h.grad.double(), h64.grad, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        again = smk.linear_cross_entropy(h, torch.tensor(weight), torch.tensor(target))
    assert again.item() == loss.item()


@requires_torch
def test_the_portable_road_and_the_fallback_without_scipy(monkeypatch):
    """The road of CUDA, JAX and half-precision input (forced here on NumPy), and the
    compiled road without SciPy's BLAS: both against the materialised float64 loss."""
    from softmaxkit import _linear_cross_entropy as lce
    from softmaxkit import _linear_cross_entropy_compiled as compiled

    hidden, weight, bias, target = _problem(40, 8, 90, seed=8)
    expected, expected_grads = _materialised(hidden, weight, bias, target, label_smoothing=0.1)
    for patch in ((lce, "compiled_backend", lambda *a: None), (compiled, "_scipy_blas", None)):
        with monkeypatch.context() as context:
            context.setattr(*patch)
            loss, grads = smk.linear_cross_entropy(
                hidden, weight, target, bias=bias, label_smoothing=0.1, return_grad=True
            )
        np.testing.assert_allclose(loss, expected, rtol=1e-12)
        for got, want in zip(grads, expected_grads, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflowing_and_masked_logits_no_warning_no_nan(dtype):
    """A logit beyond the dtype's range is +inf (the row then follows cross_entropy's
    rule for +inf logits: its gradient is finite); a class masked by a -inf bias takes
    no part, and a target there has loss inf with a finite gradient. No RuntimeWarning
    (the test suite turns them into errors)."""
    big = np.sqrt(np.finfo(dtype).max) * 2
    hidden = np.array([[big, 0.0], [1.0, 2.0], [0.0, 1.0], [0.5, 0.5]], dtype)
    weight = np.array([[big, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype)
    bias = np.array([0.0, 0.0, -np.inf], dtype)
    target = np.array([1, 0, 1, 2])
    loss, (grad_hidden, grad_weight, grad_bias) = smk.linear_cross_entropy(
        hidden, weight, target, bias=bias, reduction="none", return_grad=True
    )
    assert loss[0] == np.inf and loss[3] == np.inf
    # The ordinary rows against the materialised float64 logits (class 2 masked).
    z = hidden[1:3].astype(np.float64) @ weight.astype(np.float64).T + bias
    reference = np.logaddexp.reduce(z[:, :2], axis=1) - z[[0, 1], [0, 1]]
    np.testing.assert_allclose(loss[1:3], reference, rtol=4 * np.finfo(dtype).eps)
    assert np.all(np.isfinite(grad_bias)) and np.all(np.isfinite(grad_hidden[1:]))
    # Row 0's gradient: its +inf class takes the whole mass, the target -1.
    np.testing.assert_allclose(grad_hidden[0], weight[0] - weight[1])
    # Class 2 has probability 0 everywhere; row 3 targets it: -1 there.
    assert grad_bias[2] == -1.0
    assert not np.isnan(grad_weight).any()


def test_memory_default_blocks():
    n_rows, features, vocabulary = 1024, 32, 32000
    extra = _extra_peak(n_rows, features, vocabulary, None)
    assert extra < 0.1 * n_rows * vocabulary * 4
