"""The kernel as PyTorch custom operators, for ``torch.compile`` (internal).

``softmaxkit::normalize`` (softmax or log_softmax) and ``softmaxkit::logsumexp`` are
registered with ``torch.library.custom_op`` and fake implementations (the shapes and
dtypes of their results), so that ``torch.compile(fullgraph=True)`` traces a model that
calls :mod:`softmaxkit.torch` without a graph break; at run time they are the kernel on
the tensors' memory (other tensors: softmaxkit's generic path). The gradient comes from
a ``torch.autograd.Function`` around the operator (``register_autograd`` alone fails
under ``torch.func.grad`` in torch 2.13, pytorch#168393) whose backward is the closed
form of ``._autograd``, in torch operations that the compiler traces too.

Only what the functional forms and the modules pass while compiling goes this way: one
``dim``, a scalar temperature, an optional keep-mask.
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _dispatch
from .._kernels import LOGSUMEXP
from . import _autograd

__all__ = ["normalize", "logsumexp"]


@torch.library.custom_op("softmaxkit::normalize", mutates_args=())
def _normalize_op(
    x: torch.Tensor,
    op: int,
    dim: int,
    temperature: float,
    where: Optional[torch.Tensor],  # noqa: UP045 (the schema torch.library infers)
) -> torch.Tensor:
    return _dispatch.normalize(op, x, dim, temperature, where, None, None)


@_normalize_op.register_fake
def _(x, op, dim, temperature, where):
    return torch.empty_like(x)


@torch.library.custom_op("softmaxkit::logsumexp", mutates_args=())
def _logsumexp_op(
    x: torch.Tensor,
    dim: int,
    keepdim: bool,
    temperature: float,
    where: Optional[torch.Tensor],  # noqa: UP045 (the schema torch.library infers)
) -> torch.Tensor:
    return _dispatch.reduce(x, dim, None, keepdim, False, temperature, where, None, None)


@_logsumexp_op.register_fake
def _(x, dim, keepdim, temperature, where):
    shape = list(x.shape)
    if keepdim:
        shape[dim] = 1
    else:
        del shape[dim]
    return x.new_empty(shape)


class _OperatorFunction(torch.autograd.Function):
    """The operator's result, with the closed-form gradient of ``._autograd``."""

    @staticmethod
    def forward(x, keep, spec):
        op, axis, t_value, keepdims = spec
        if op == LOGSUMEXP:
            return _logsumexp_op(x, axis, keepdims, t_value, keep)
        return _normalize_op(x, op, axis, t_value, keep)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, keep, spec = inputs
        ctx.spec, ctx.input_dtype = spec, x.dtype
        if keep is not None:
            keep = keep.expand(x.shape)
        saved = (x, output, keep) if spec[0] == LOGSUMEXP else (output, keep)
        ctx.save_for_backward(*saved)

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors + (None,)  # no temperature per row
        return _autograd._backward(ctx.spec, ctx.input_dtype, saved, g), None, None


def _spec(op, x, dim, temperature, keepdim=False):
    if isinstance(dim, bool) or not isinstance(dim, int):
        return None
    if not -x.ndim <= dim < max(x.ndim, 1) or x.ndim == 0:
        return None
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        return None
    return op, dim % x.ndim, float(temperature), bool(keepdim)


def normalize(op, x, dim, temperature, where):
    """softmax (op 0) or log_softmax (op 1) through the operator, or NotImplemented
    for arguments it does not take."""
    spec = _spec(op, x, dim, temperature)
    if spec is None or not isinstance(x, torch.Tensor):
        return NotImplemented
    if where is not None and not isinstance(where, torch.Tensor):
        return NotImplemented
    return _OperatorFunction.apply(x, where, spec)


def logsumexp(x, dim, keepdim, temperature, where):
    """logsumexp through the operator, or NotImplemented."""
    spec = _spec(LOGSUMEXP, x, dim, temperature, keepdim)
    if spec is None or not isinstance(x, torch.Tensor):
        return NotImplemented
    if where is not None and not isinstance(where, torch.Tensor):
        return NotImplemented
    return _OperatorFunction.apply(x, where, spec)
