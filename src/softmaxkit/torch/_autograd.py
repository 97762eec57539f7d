"""Autograd for the kernel on tensors: a ``torch.autograd.Function`` (internal).

The forward runs the compiled kernel (``._bridge``); the backward is the closed-form
vector-Jacobian product, in torch operations on the input's dtype (so that it is
itself differentiable, and runs under ``torch.func``):

- softmax: ``y * (g - sum(g * y)) / T`` (``torch._softmax_backward_data``);
- log_softmax: ``(g - exp(y) * sum(g)) / T`` (``torch._log_softmax_backward_data``),
  with the upstream gradient of masked entries left out (their output is the
  constant ``-inf``), and 0 on rows where no entry takes part;
- logsumexp: ``g * softmax(x / T) / T``, the softmax recomputed as
  ``exp(x / T - lse)``.

The edge rules of the core: the gradient is 0 at masked entries, on rows where no
entry takes part and rows whose logsumexp is infinite, at softmax's and logsumexp's
entries of probability 0, and for a temperature of 0 or ``inf`` (the result does not
move with ``x`` there); finite wherever the upstream gradient and the input are (a row
with ``+inf`` entries gets the product at its limit probabilities; an ``-inf`` entry of
a row with finite ones passes its upstream gradient through log_softmax, as in torch).
It is set up with ``setup_context`` (so that ``torch.func.grad`` and ``torch.func.vjp``
work) and has a ``jvp`` and a ``vmap`` rule: the batch dimension is moved first and the
kernel runs on the whole batch. Outside torch.func, :class:`PlainFunction` does the
same at less cost per call.
"""

from __future__ import annotations

import math

import torch

from .._kernels import LOGSUMEXP, SOFTMAX
from . import _bridge

__all__ = ["apply"]


def _working(dtype):
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _scale(grad, t_value, t_tensor, dtype):
    """``grad / T`` in ``dtype``, 0 where ``T`` is 0."""
    if t_tensor is None:
        if t_value == 1.0:
            return grad
        if t_value == 0.0 or math.isinf(t_value):
            return torch.zeros_like(grad)
        return grad / t_value
    t = t_tensor.to(_working(dtype))
    scaled = torch.where(t == 0, 0.0, grad.to(t.dtype) / t)
    return scaled.to(dtype)


class KernelFunction(torch.autograd.Function):
    """softmax, log_softmax or logsumexp by the kernel, with its closed-form VJP."""

    generate_vmap_rule = False

    @staticmethod
    def forward(x, keep, t_tensor, spec):
        op, axis, t_value, keepdims = spec
        t_row = None if t_tensor is None else t_tensor.numpy()
        mask = None if keep is None else keep.numpy()
        if op == LOGSUMEXP:
            return _bridge.reduce_tensor(x, axis, t_value, t_row, mask, keepdims)
        return _bridge.normalize_tensor(op, x, axis, t_value, t_row, mask)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, keep, t_tensor, spec = inputs
        ctx.spec = spec
        ctx.input_dtype = x.dtype
        ctx.set_materialize_grads(True)
        saved = (x, output, keep, t_tensor) if spec[0] == LOGSUMEXP else (output, keep, t_tensor)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)

    @staticmethod
    def backward(ctx, g):
        return _backward(ctx.spec, ctx.input_dtype, ctx.saved_tensors, g), None, None, None

    @staticmethod
    def jvp(ctx, x_tangent, *_):
        """Forward mode (``torch.func.jvp``, ``jacfwd``, ``hessian``)."""
        op, axis, t_value, keepdims = ctx.spec
        dtype = ctx.input_dtype
        if op == LOGSUMEXP:
            x, lse, keep, t_tensor = ctx.saved_tensors
            if _frozen(t_tensor, t_value):
                return torch.zeros_like(lse)
            probabilities = _lse_probabilities(x, lse, keep, t_tensor, t_value, axis, keepdims)
            tangent = _scale(
                x_tangent.to(probabilities.dtype), t_value, t_tensor, probabilities.dtype
            )
            return (probabilities * tangent).sum(axis, keepdim=keepdims).to(dtype)
        y, keep, t_tensor = ctx.saved_tensors
        tangent = _scale(x_tangent, t_value, t_tensor, dtype)
        if keep is not None:
            tangent = tangent.masked_fill(~keep, 0)
        if op == SOFTMAX:
            return y * (tangent - (tangent * y).sum(axis, keepdim=True))
        result = tangent - (torch.exp(y) * tangent).sum(axis, keepdim=True)
        result = _without_empty_rows(result, y, axis)
        return result if keep is None else result.masked_fill(~keep, 0)

    @staticmethod
    def vmap(info, in_dims, x, keep, t_tensor, spec):
        op, axis, t_value, keepdims = spec
        size = info.batch_size

        def batch_first(t, dim):
            if t is None:
                return None
            if dim is None:
                return t.unsqueeze(0).expand(size, *t.shape)
            return t.movedim(dim, 0)

        x_dim, keep_dim, t_dim = in_dims[:3]
        result = KernelFunction.apply(
            batch_first(x, x_dim),
            batch_first(keep, keep_dim),
            batch_first(t_tensor, t_dim),
            (op, axis + 1, t_value, keepdims),
        )
        return result, 0


def _backward(spec, dtype, saved, g):
    """The gradient with respect to ``x`` (the saved tensors as setup_context saves them)."""
    op, axis, t_value, keepdims = spec
    if op == LOGSUMEXP:
        x, lse, keep, t_tensor = saved
        return _lse_backward(g, x, lse, keep, t_tensor, axis, t_value, keepdims)
    y, keep, t_tensor = saved
    if op == SOFTMAX:
        grad = torch._softmax_backward_data(g, y, axis, dtype)
    else:
        if keep is not None:
            g = g.masked_fill(~keep, 0)
        grad = _without_empty_rows(torch._log_softmax_backward_data(g, y, axis, dtype), y, axis)
    return _scale(grad, t_value, t_tensor, dtype)


def _without_empty_rows(grad, y, axis):
    """``grad`` with 0 on the rows where no entry takes part (log_softmax ``-inf``
    throughout: all ``-inf`` or all masked), as on the generic path."""
    empty = torch.isneginf(y.amax(axis, keepdim=True))
    if _traced(y):
        return torch.where(empty, 0.0, grad)
    if bool(empty.any()):
        grad = grad.masked_fill(empty, 0)
    return grad


class PlainFunction(torch.autograd.Function):
    """The same with the forward taking ``ctx`` (a few microseconds less per call than
    ``setup_context``), for plain autograd outside torch.func and forward AD."""

    @staticmethod
    def forward(ctx, x, keep, t_tensor, spec):
        result = KernelFunction.forward(x, keep, t_tensor, spec)
        ctx.spec = spec
        ctx.input_dtype = x.dtype
        if spec[0] == LOGSUMEXP:
            ctx.save_for_backward(x, result)
        else:
            ctx.save_for_backward(result)
        ctx.keep, ctx.t_tensor = keep, t_tensor
        return result

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors + (ctx.keep, ctx.t_tensor)
        return _backward(ctx.spec, ctx.input_dtype, saved, g), None, None, None


def _lse_probabilities(x, lse, keep, t_tensor, t_value, axis, keepdims):
    """``softmax(x / T)`` from logsumexp's result, in the working dtype: 0 on rows of
    infinite logsumexp (all -inf or masked, a +inf entry) and at masked entries."""
    work = _working(x.dtype)
    if not keepdims:
        lse = lse.unsqueeze(axis)
    scaled = x.to(work)
    if t_tensor is not None:
        scaled = scaled / t_tensor.to(work)
    elif t_value != 1.0:
        scaled = scaled / t_value
    lse = lse.to(work)
    infinite = torch.isinf(lse)
    if _traced(lse):  # differentiable, vmap-able, traceable
        probabilities = torch.where(infinite, 0.0, torch.exp(scaled - lse))
    else:  # in place; the rows of infinite logsumexp fixed only where there are some
        probabilities = torch.sub(scaled, lse).exp_()
        if bool(infinite.any()):
            probabilities.masked_fill_(infinite, 0)
    if keep is not None:
        probabilities = probabilities.masked_fill(~keep, 0)
    return probabilities


def _traced(t):
    """Whether the backward must stay out of place and free of data-dependent branches:
    a graph is being recorded (double backward), traced (torch.compile) or ``t`` is
    wrapped by torch.func."""
    return torch.is_grad_enabled() or torch.compiler.is_compiling() or _bridge._is_wrapped(t)


def _frozen(t_tensor, t_value):
    """Whether the result does not move with ``x``: a scalar temperature of 0 or inf."""
    return t_tensor is None and (t_value == 0.0 or math.isinf(t_value))


def _lse_backward(g, x, lse, keep, t_tensor, axis, t_value, keepdims):
    """``g * softmax(x / T) / T``."""
    if _frozen(t_tensor, t_value):
        return torch.zeros_like(x)
    probabilities = _lse_probabilities(x, lse, keep, t_tensor, t_value, axis, keepdims)
    if not keepdims:
        g = g.unsqueeze(axis)
    work = probabilities.dtype
    if _traced(probabilities):
        product = g.to(work) * probabilities
    else:
        product = probabilities.mul_(g.to(work))
    return _scale(product, t_value, t_tensor, work).to(x.dtype)


def apply(op, x, axis, t_value, t_tensor, keep, keepdims):
    """The kernel's result for ``x``, differentiable."""
    if not _bridge._is_wrapped(x) and _bridge._forward_ad._current_level < 0:
        return PlainFunction.apply(x, keep, t_tensor, (op, axis, t_value, bool(keepdims)))
    return KernelFunction.apply(x, keep, t_tensor, (op, axis, t_value, bool(keepdims)))
