"""Class-index targets of every integer dtype, on every array library the losses take.

PyTorch indexes with int64 only, and PyTorch and JAX compare an unsigned target with a
negative ``ignore_index`` modulo 2**8 (uint8 156 equals -100 there): the targets are
converted to the library's index dtype first. The reference is the loss written with
SciPy's ``log_softmax``, and PyTorch's own losses on int64 targets.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

import softmaxkit as smk

SMALL_DTYPES = ["uint8", "int8", "int16", "int32"]


# The libraries of conftest's ``backend`` fixture that the class losses take (TensorFlow
# tensors they do not).
LIBRARIES = ("numpy", "numpy_readonly", "array_api_strict", "torch", "jax", "dask")


def _on(*names):
    return pytest.mark.parametrize("backend", names, indirect=True)


def _case(n_rows=6, n_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_rows, n_classes)) * 2
    target = rng.integers(0, n_classes, size=n_rows)
    weight = rng.random(n_classes) + 0.5
    return logits, target, weight


def _expected(logits, target, weight, *, ignore_index=-100, log_probs=False):
    """Mean cross-entropy (or NLL of ``logits`` as log-probabilities) and its gradient."""
    active = target != ignore_index
    safe = np.where(active, target, 0)
    rows = np.arange(len(target))
    row_weight = np.where(active, 1.0 if weight is None else weight[safe], 0.0)
    log_p = logits if log_probs else log_softmax(logits, axis=-1)
    total = row_weight.sum()
    loss = -(row_weight * log_p[rows, safe]).sum() / total
    onehot = np.zeros_like(logits)
    onehot[rows, safe] = 1.0
    p = 0.0 if log_probs else softmax(logits, axis=-1)
    grad = (p - onehot) * (row_weight / total)[:, None]
    return loss, grad


def _numpy(backend, result):
    if isinstance(result, tuple):
        return tuple(backend.to_numpy(r) for r in result)
    return backend.to_numpy(result)


@_on(*LIBRARIES)
@pytest.mark.parametrize("dtype", SMALL_DTYPES + ["int64"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("function", ["cross_entropy", "nll_loss"])
def test_every_integer_dtype_gives_the_loss_of_int64(backend, dtype, weighted, function):
    logits, target, weight = _case()
    target[1] = -100 if dtype.startswith("int") else target[1]
    is_nll = function == "nll_loss"
    values = log_softmax(logits, axis=-1) if is_nll else logits
    expected_loss, expected_grad = _expected(
        values, target, weight if weighted else None, log_probs=is_nll
    )
    call = getattr(smk, function)
    options = dict(weight=backend.asarray(weight)) if weighted else {}
    arrays = backend.asarray(values), backend.asarray(target, dtype=dtype)
    loss = _numpy(backend, call(*arrays, **options))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    loss, grad = _numpy(backend, call(*arrays, return_grad=True, **options))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-16)


@_on(*LIBRARIES)
def test_unsigned_targets_never_equal_a_negative_ignore_index(backend):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 256))
    # 156 is -100 modulo 2**8 and 255 is -1: both are classes here, not ignored rows.
    target = np.array([156, 255, 0, 3])
    for ignore_index in (-100, -1):
        expected_loss, expected_grad = _expected(logits, target, None, ignore_index=ignore_index)
        loss, grad = _numpy(
            backend,
            smk.cross_entropy(
                backend.asarray(logits),
                backend.asarray(target, dtype="uint8"),
                ignore_index=ignore_index,
                return_grad=True,
            ),
        )
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-16)


@_on(*LIBRARIES)
def test_uint8_ignore_index_255(backend):
    logits, _, weight = _case(n_rows=4)
    target = np.array([1, 255, 4, 255])
    for options in (dict(), dict(weight=weight)):
        expected_loss, expected_grad = _expected(
            logits, target, options.get("weight"), ignore_index=255
        )
        loss, grad = _numpy(
            backend,
            smk.cross_entropy(
                backend.asarray(logits),
                backend.asarray(target, dtype="uint8"),
                ignore_index=255,
                return_grad=True,
                **{k: backend.asarray(v) for k, v in options.items()},
            ),
        )
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-16)
        assert np.all(grad[[1, 3]] == 0.0)


@_on("numpy", "array_api_strict")
def test_unsigned_values_beyond_the_index_dtype_are_out_of_range(backend):
    # uint64 2**64 - 1 would become -1 in int64: it is reported, not taken for ignore_index.
    logits, _, _ = _case(n_rows=2)
    target = backend.asarray(np.array([2**64 - 1, 0], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"target must hold class indices in \[0, 5\).*18446"):
        smk.cross_entropy(backend.asarray(logits), target, ignore_index=-1)
    target = backend.asarray(np.array([2**32 - 1, 0], dtype=np.uint32))
    with pytest.raises(ValueError, match="4294967295"):
        smk.cross_entropy(backend.asarray(logits), target)


@pytest.mark.parametrize("dtype", SMALL_DTYPES)
def test_small_integer_targets_match_torch_on_int64(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits, target, weight = _case(n_rows=7, n_classes=4, seed=3)
    target[2] = 3
    for options in (dict(), dict(weight=weight), dict(ignore_index=3), dict(label_smoothing=0.1)):
        torch_options = {k: torch.from_numpy(v) if k == "weight" else v for k, v in options.items()}
        x = torch.from_numpy(logits).requires_grad_()
        expected = F.cross_entropy(x, torch.from_numpy(target), **torch_options)
        expected.backward()
        small = torch.from_numpy(target.astype(dtype))
        loss, grad = smk.cross_entropy(
            torch.from_numpy(logits), small, return_grad=True, **torch_options
        )
        np.testing.assert_allclose(loss.numpy(), expected.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(grad.numpy(), x.grad.numpy(), rtol=1e-12, atol=1e-16)
        # Autograd through the loss, without return_grad.
        x.grad = None
        smk.cross_entropy(x, small, **torch_options).backward()
        np.testing.assert_allclose(x.grad.numpy(), grad.numpy(), rtol=1e-12, atol=1e-16)
        log_p = F.log_softmax(torch.from_numpy(logits), dim=-1)
        if "label_smoothing" not in options:
            np.testing.assert_allclose(
                smk.nll_loss(log_p, small, **torch_options).numpy(),
                F.nll_loss(log_p, torch.from_numpy(target), **torch_options).numpy(),
                rtol=1e-13,
            )


@_on("numpy", "torch")
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32"])
def test_linear_cross_entropy_takes_every_integer_dtype(backend, dtype):
    rng = np.random.default_rng(4)
    hidden = rng.standard_normal((5, 3))
    weight = rng.standard_normal((300, 3))
    # 200 would be a wrapped -56 in a uint8 comparison, and out of range of arange(uint8).
    target = np.array([200, 1, 255, 7, 299 if dtype != "uint8" else 254])
    expected_loss, expected_grad = _expected(hidden @ weight.T, target, None)
    loss, (grad_hidden, _) = smk.linear_cross_entropy(
        backend.asarray(hidden),
        backend.asarray(weight),
        backend.asarray(target, dtype=dtype),
        chunk_size=64,
        return_grad=True,
    )
    np.testing.assert_allclose(backend.to_numpy(loss), expected_loss, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(grad_hidden), expected_grad @ weight, rtol=1e-11)
