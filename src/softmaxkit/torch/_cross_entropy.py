"""cross_entropy of CPU tensors through the NumPy road of the class losses (internal).

A validated call (:class:`~softmaxkit.losses._class_loss._ClassLoss`) on CPU tensors
is handed to the NumPy path as views of the tensors' memory (``._bridge.array_of``):
blocks of rows, and for class-index targets with a scalar temperature, no mask and no
label smoothing one fused kernel pass per block that writes the loss and its gradient
together (``softmaxkit._kernels.softmax_stats``). float16 and bfloat16 logits are
converted to float32 by torch first (the working dtype of the losses); the results are
tensors in the dtype the generic path gives.

With autograd, the forward computes the gradient as well and keeps it: the backward
is one multiplication by the upstream gradient. A backward that builds a graph itself
(``create_graph=True``, for a second derivative) computes the gradient again by the
generic path, which torch differentiates. Everything this module does not take
(another device, ``torch.func`` transforms, ``torch.compile`` tracing, forward-mode AD,
a target, weight or temperature that needs a gradient, ``return_grad`` on logits that
need one) takes the generic path, which defines the semantics.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd import forward_ad as _forward_ad

from .. import _kernels
from ..losses import _plain_index
from ._bridge import _is_wrapped

__all__ = ["cross_entropy", "plain_cross_entropy"]

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _plain_cpu(t):
    """Whether ``t`` is a strided CPU tensor the NumPy road may read (not traced)."""
    return t.is_cpu and t.layout is torch.strided and not _is_wrapped(t)


def _as_numpy(t):
    """``t`` (a tensor that needs no gradient, or a Python value) for the NumPy road."""
    if not isinstance(t, torch.Tensor):
        return t
    return t.detach().numpy()


def _road_open(values):
    """Whether the NumPy road may take logits ``values`` at all (the kernel is there,
    a float dtype, plain CPU memory, no trace or forward-mode AD)."""
    return (
        isinstance(values, torch.Tensor)
        and _kernels._kernel is not None
        and not _kernels._forced_generic[0]
        and values.dtype in _FLOATS
        and _plain_cpu(values)
        and _forward_ad._current_level < 0
        and not torch.compiler.is_compiling()
    )


def _takes(loss, return_grad):
    values = loss.values
    if not _road_open(values):
        return False
    if return_grad and values.requires_grad and torch.is_grad_enabled():
        return False  # the generic path's gradient is itself differentiable
    for other in (loss.targets.array, loss.weight, loss.keep, loss.temperature):
        if isinstance(other, torch.Tensor) and (not _plain_cpu(other) or other.requires_grad):
            return False
    return True


def _numpy_logits(values):
    """The logits as the NumPy road reads them: float32 or float64, no copy for those."""
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.detach().to(torch.float32)
    return values.detach().numpy()


def cross_entropy(loss, run_numpy, run_generic, *, return_grad):
    """The loss (and with ``return_grad`` its gradient, class axis at ``loss.axis``) of a
    validated call on CPU tensors, or NotImplemented for the generic path.

    ``run_numpy(twin, return_grad)`` runs the NumPy road on the NumPy twin of the call
    and returns the loss and the gradient (class axis last, None without
    ``return_grad``); ``run_generic(values)`` the generic path's loss on logits
    ``values`` (class axis last), for a backward that builds a graph.
    """
    if not _takes(loss, return_grad):
        return NotImplemented
    values = loss.values
    twin = loss.as_numpy(_numpy_logits(values), _as_numpy)
    result_dtype = loss.plan.result
    if return_grad:
        row_loss, grad = run_numpy(twin, True)
        grad = torch.from_numpy(grad).to(result_dtype).movedim(-1, loss.axis)
        return _tensor(row_loss, result_dtype), grad
    if not (values.requires_grad and torch.is_grad_enabled()):
        return _tensor(run_numpy(twin, False)[0], result_dtype)
    return _CrossEntropy.apply(
        values, lambda: run_numpy(twin, True), run_generic, loss.reduction == "none"
    ).to(result_dtype)


def _tensor(array, dtype):
    return torch.from_numpy(np.asarray(array)).to(dtype)


def plain_cross_entropy(
    logits, target, ignore_index, reduction, smoothing, generic, *, return_grad
):
    """The plain call (:mod:`softmaxkit.losses._plain_index`) on a 2-D CPU tensor of
    logits (rows, classes) and a tensor of class indices, or NotImplemented.

    ``generic(values, target, ignore_index, reduction, smoothing)`` is the generic
    path's loss on logits ``values``, for a backward that builds a graph.
    """
    if (
        not _road_open(logits)
        or type(target) is not torch.Tensor
        or target.dtype not in _INDEX_DTYPES
        or not _plain_cpu(target)
    ):
        return NotImplemented
    needs_graph = logits.requires_grad and torch.is_grad_enabled()
    if return_grad and needs_graph:
        return NotImplemented  # the generic path's gradient is itself differentiable
    dtype = logits.dtype
    bits = dtype is torch.bfloat16  # read in place, as its bits
    if bits:
        values = logits.detach().view(torch.int16).numpy()
    elif dtype is torch.float16:
        values = logits.detach().to(torch.float32).numpy()
    else:
        values = logits.detach().numpy() if logits.requires_grad else logits.numpy()
    classes = target.numpy()
    result = _plain_index.row_losses(
        values, classes, ignore_index, reduction, return_grad or needs_graph, smoothing, bits
    )
    if result is NotImplemented:
        return result
    row_loss, grad = result
    if grad is not None:
        grad = _grad_tensor(grad, bits)
    if return_grad:
        return _same_dtype(row_loss, dtype), grad if grad.dtype == dtype else grad.to(dtype)
    if not needs_graph:
        return _same_dtype(row_loss, dtype)
    first = [(row_loss, grad)]

    def compute_again():  # the first call's result, then (retain_graph) a new one
        if first:
            return first.pop()
        again = _plain_index.row_losses(
            values, classes, ignore_index, reduction, True, smoothing, bits
        )
        return again[0], _grad_tensor(again[1], bits)

    def run_generic(values):
        return generic(values, target, ignore_index, reduction, smoothing)

    loss = _CrossEntropy.apply(logits, compute_again, run_generic, reduction == "none")
    return loss if loss.dtype == dtype else loss.to(dtype)


_INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)


def _grad_tensor(grad, bits):
    """The gradient the plain call wrote, as a tensor (bfloat16 from its bits)."""
    tensor = torch.from_numpy(grad)
    return tensor.view(torch.bfloat16) if bits else tensor


def _same_dtype(array, dtype):
    tensor = torch.from_numpy(array)
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _as_tensor(array):
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))


class _CrossEntropy(torch.autograd.Function):
    """The loss by the NumPy road; its gradient, computed with it, kept for backward.

    The backward hands the kept gradient itself to autograd (scaled in place by the
    upstream gradient unless that is 1), so that ``x.grad`` can take it without a copy;
    a second backward of a retained graph computes it again.
    """

    @staticmethod
    def forward(ctx, values, compute, run_generic, per_row):
        row_loss, grad = compute()  # the gradient with the class axis last, as values
        ctx.grad = _as_tensor(grad)
        ctx.compute, ctx.run_generic, ctx.per_row = compute, run_generic, per_row
        ctx.save_for_backward(values)
        return torch.from_numpy(np.asarray(row_loss))

    @staticmethod
    def backward(ctx, upstream):
        (values,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph: a gradient that torch can differentiate again.
            with torch.enable_grad():
                result = ctx.run_generic(values)
                (grad,) = torch.autograd.grad(result, values, upstream, create_graph=True)
            return grad, None, None, None
        grad, ctx.grad = ctx.grad, None
        if grad is None:  # a second backward (retain_graph=True)
            grad = _as_tensor(ctx.compute()[1])
        if ctx.per_row:
            grad.mul_(upstream[..., None].to(grad.dtype))
        elif upstream.numel() != 1 or upstream.item() != 1.0:
            grad.mul_(upstream.to(grad.dtype))
        return grad.to(values.dtype), None, None, None
