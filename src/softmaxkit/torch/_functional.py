"""The functional forms, with PyTorch's argument names (``dim``, ``keepdim``)."""

from __future__ import annotations

import torch

from .. import _dispatch
from .._kernels import LOG_SOFTMAX, SOFTMAX
from . import _compile

_compiling = torch.compiler.is_compiling

__all__ = ["softmax", "log_softmax", "logsumexp"]


def softmax(x, dim=-1, *, temperature=1.0, where=None, dtype=None, out=None):
    r"""Softmax of the tensor ``x`` along ``dim``: :func:`softmaxkit.softmax` with ``dim``.

    Parameters
    ----------
    x : torch.Tensor
        Scores (logits). CPU tensors of float32, float64, float16 and bfloat16 run in the
        compiled kernel without a copy (any strides), with autograd; other tensors take
        the generic path.
    dim : int, tuple of int or None, default -1
        The dimension (or dimensions, jointly) to normalize over; ``None`` is all of
        them (not PyTorch's deprecated implicit choice).
    temperature : float or tensor, default 1.0
        ``x`` is divided by it: a scalar >= 0 or one temperature per row.
    where : tensor of bool, optional
        Keep-mask broadcastable to ``x``; False entries get probability 0.
    dtype : torch.dtype, optional
        Dtype of the computation and the result.
    out : torch.Tensor, optional
        A CPU tensor of the result's shape and dtype to write into (``x`` itself is
        allowed); not with autograd.

    Returns
    -------
    torch.Tensor
        Probabilities of ``x``'s shape, dtype and device.

    See Also
    --------
    softmaxkit.softmax, Softmax

    Examples
    --------
    >>> import torch
    >>> import softmaxkit.torch as smt
    >>> smt.softmax(torch.tensor([[1.0, 3.0, 2.0]]), dim=1)
    tensor([[0.0900, 0.6652, 0.2447]])
    """
    if _compiling() and dtype is None and out is None:
        result = _compile.normalize(SOFTMAX, x, dim, temperature, where)
        if result is not NotImplemented:
            return result
    return _dispatch.normalize(SOFTMAX, x, dim, temperature, where, dtype, out)


def log_softmax(x, dim=-1, *, temperature=1.0, where=None, dtype=None, out=None):
    r"""Log-softmax of the tensor ``x`` along ``dim``: :func:`softmaxkit.log_softmax`.

    Parameters
    ----------
    x : torch.Tensor
        Scores (logits), as in :func:`softmax`.
    dim : int, tuple of int or None, default -1
        The dimension (dimensions) to normalize over.
    temperature : float or tensor, default 1.0
        As in :func:`softmax`.
    where : tensor of bool, optional
        Keep-mask; False entries get ``-inf`` (and no gradient).
    dtype : torch.dtype, optional
        Dtype of the computation and the result.
    out : torch.Tensor, optional
        As in :func:`softmax`.

    Returns
    -------
    torch.Tensor
        Log-probabilities of ``x``'s shape, dtype and device.

    See Also
    --------
    softmaxkit.log_softmax, LogSoftmax

    Examples
    --------
    >>> import torch
    >>> import softmaxkit.torch as smt
    >>> smt.log_softmax(torch.tensor([0.0, -40.0], dtype=torch.float64))[0].item()
    -4.248354255291589e-18
    """
    if _compiling() and dtype is None and out is None:
        result = _compile.normalize(LOG_SOFTMAX, x, dim, temperature, where)
        if result is not NotImplemented:
            return result
    return _dispatch.normalize(LOG_SOFTMAX, x, dim, temperature, where, dtype, out)


def logsumexp(x, dim, keepdim=False, *, temperature=1.0, where=None, dtype=None, out=None):
    r"""``log(sum(exp(x / T)))`` of the tensor ``x`` along ``dim``, as ``torch.logsumexp``.

    Parameters
    ----------
    x : torch.Tensor
        Scores, as in :func:`softmax`.
    dim : int, tuple of int or None
        The dimension (dimensions) to reduce; ``None`` is all of them.
    keepdim : bool, default False
        Keep the reduced dimensions with length 1.
    temperature : float or tensor, default 1.0
        As in :func:`softmax`.
    where : tensor of bool, optional
        Keep-mask; False entries take no part.
    dtype : torch.dtype, optional
        Dtype of the computation and the result.
    out : torch.Tensor, optional
        A tensor of the result's shape and dtype to write into; not with autograd.

    Returns
    -------
    torch.Tensor
        The reduced log-sum-exp.

    See Also
    --------
    softmaxkit.logsumexp

    Examples
    --------
    >>> import torch
    >>> import softmaxkit.torch as smt
    >>> smt.logsumexp(torch.tensor([[0.0, -40.0]], dtype=torch.float64), dim=1)
    tensor([4.2484e-18], dtype=torch.float64)
    """
    if _compiling() and dtype is None and out is None:
        result = _compile.logsumexp(x, dim, keepdim, temperature, where)
        if result is not NotImplemented:
            return result
    return _dispatch.reduce(x, dim, None, keepdim, False, temperature, where, dtype, out)
