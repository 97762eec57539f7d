"""linear_cross_entropy against PyTorch's cross_entropy on the materialised logits."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import softmaxkit as smk

torch = pytest.importorskip("torch")
F = torch.nn.functional


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
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
