"""attention against torch.nn.functional.scaled_dot_product_attention."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from optional import requires_torch, torch

import softmaxkit as smk

F = None if torch is None else torch.nn.functional
TORCH_FLOATS = [] if torch is None else [torch.float32, torch.float64]


def _inputs(shape_q, shape_k, value_features, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(shape_q).astype(dtype)
    k = rng.standard_normal(shape_k).astype(dtype)
    v = rng.standard_normal(shape_k[:-1] + (value_features,)).astype(dtype)
    return q, k, v


def _sdpa(q, k, v, **options):
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (q, k, v)]
    if "attn_mask" in options and options["attn_mask"] is not None:
        options["attn_mask"] = torch.from_numpy(options["attn_mask"])
    return F.scaled_dot_product_attention(*tensors, **options).numpy()


@requires_torch
@pytest.mark.parametrize("block_size", [None, 1, 3, 7, 64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", [(9, 9), (5, 13), (13, 5)])
def test_numpy_matches_sdpa(block_size, causal, lengths):
    n_query, n_key = lengths
    q, k, v = _inputs((2, 3, n_query, 8), (2, 3, n_key, 8), 5)
    got = smk.attention(q, k, v, causal=causal, block_size=block_size)
    assert isinstance(got, np.ndarray) and got.shape == (2, 3, n_query, 5)
    expected = _sdpa(q, k, v, is_causal=causal)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


@requires_torch
@pytest.mark.parametrize("block_size", [None, 4])
def test_boolean_mask_and_scale(block_size):
    q, k, v = _inputs((3, 6, 4), (3, 10, 4), 2, seed=1)
    rng = np.random.default_rng(2)
    mask = rng.random((6, 10)) < 0.6
    mask[:, 0] = True  # every query attends at least one key
    got = smk.attention(q, k, v, mask=mask, scale=0.7, block_size=block_size)
    expected = _sdpa(q, k, v, attn_mask=mask, scale=0.7)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


@requires_torch
def test_fully_masked_queries_get_zeros_and_finite_gradients():
    q, k, v = (torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[1] = False
    out = smk.attention(q, k, v, mask=mask, block_size=3)
    assert torch.equal(out[:, 1], torch.zeros(2, 8, dtype=torch.float64))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    # The queries that attend somewhere agree with PyTorch.
    rows = torch.tensor([0, 2, 3])
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out[:, rows], expected[:, rows])


@requires_torch
def test_causal_with_more_keys_than_a_query_sees():
    q, k, v = _inputs((3, 4), (12, 4), 3, seed=4)
    got = smk.attention(q, k, v, causal=True, block_size=2)
    np.testing.assert_allclose(got, _sdpa(q, k, v, is_causal=True), rtol=1e-12, atol=1e-13)


@requires_torch
@pytest.mark.parametrize("dtype", TORCH_FLOATS)
def test_torch_values_and_gradients(dtype):
    generator = torch.Generator().manual_seed(5)
    shape = (2, 2, 17, 8)
    q, k, v = (torch.randn(shape, generator=generator, dtype=dtype) * 2 for _ in range(3))
    for t in (q, k, v):
        t.requires_grad_(True)
    out = smk.attention(q, k, v, causal=True, block_size=5)
    assert out.dtype == dtype
    cotangent = torch.randn(out.shape, generator=generator, dtype=dtype)
    grads = torch.autograd.grad(out, (q, k, v), cotangent)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expected_grads = torch.autograd.grad(expected, (q, k, v), cotangent)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(out, expected, **tolerance)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, **tolerance)


def test_errors():
    q, k, v = _inputs((3, 4), (5, 4), 2)
    with pytest.raises(ValueError, match="same feature size"):
        smk.attention(q, k[:, :3], v)
    with pytest.raises(ValueError, match="same number of keys"):
        smk.attention(q, k, v[:4])
    with pytest.raises(ValueError, match="block_size must be > 0, got 0"):
        smk.attention(q, k, v, block_size=0)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        smk.attention(q, k, v, mask=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="does not broadcast"):
        smk.attention(q, k, v, mask=np.ones((3, 4), dtype=bool))


def _peak_traced(length, features, block_size):
    q, k, v = _inputs((length, features), (length, features), features, seed=6, dtype=np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = smk.attention(q, k, v, causal=True, block_size=block_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(out).all()
    return peak


def test_memory_small():
    length = 2048
    peak = _peak_traced(length, 16, 64)
    # The dense float64 score matrix alone would be length**2 * 8 bytes (32 MiB).
    assert peak < 0.2 * length * length * 8


@pytest.mark.slow
def test_memory_at_16384():
    length = 16384
    peak = _peak_traced(length, 16, 128)
    # The dense float32 score matrix alone would be 1 GiB.
    assert peak < 0.1 * length * length * 4


@requires_torch
@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [] if torch is None else [torch.float32, torch.float16])
def test_cuda_matches_sdpa(dtype):
    generator = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 4, 300, 64, generator=generator).to("cuda", dtype) for _ in range(3))
    mask = torch.rand(300, 300, generator=generator).cuda() < 0.8
    mask[5] = False
    out = smk.attention(q, k, v, mask=mask, block_size=128)
    assert out.device.type == "cuda" and out.dtype == dtype
    assert torch.equal(out[:, :, 5], torch.zeros_like(out[:, :, 5]))
    expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    rows = torch.arange(300, device="cuda") != 5
    tolerance = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(
        out[:, :, rows].double(), expected[:, :, rows], rtol=tolerance, atol=tolerance
    )
