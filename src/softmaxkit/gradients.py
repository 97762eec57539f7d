"""Analytic gradients of softmax and log_softmax, for array libraries without autograd.

Written once against the array namespace ``xp``. Autograd users (PyTorch, JAX) do not
need these; NumPy users do, and they are the reference the tests check autograd
against.
"""

from __future__ import annotations

import numpy as np

from ._lib._call import describe
from ._lib._dtypes import plan_dtypes
from ._lib._namespace import array_namespace, as_array, device_of, is_numpy_namespace
from ._lib._shifted_exp import reduce_sum
from ._lib._typing import Array, ArrayLike, Axis, Int
from ._lib._validation import broadcast_operand, single_axis
from ._softmax import softmax

__all__ = ["softmax_vjp", "log_softmax_vjp", "softmax_jacobian"]


def _operands(first, grad, axis):
    call = describe(first, axis, extra=(grad,))
    xp, plan = call.xp, call.plan
    work = call.x
    cotangent = broadcast_operand(xp, grad, work, "grad", dtype=plan.work)
    return xp, plan, work, cotangent, call.axes


def _finish(xp, plan, result):
    result = xp.astype(result, plan.result)
    return np.asarray(result) if is_numpy_namespace(xp) else result


def softmax_vjp(probs: ArrayLike, grad: ArrayLike, /, axis: Axis = -1) -> Array:
    r"""Vector-Jacobian product of softmax: ``probs * (grad - sum(probs * grad))``.

    Parameters
    ----------
    probs : array_like
        The output of :func:`~softmaxkit.softmax` along ``axis``.
    grad : array_like
        The gradient with respect to ``probs`` (broadcastable to it).
    axis : int, tuple of int or None, default -1
        The axis (axes) the softmax normalized.

    Returns
    -------
    array
        The gradient with respect to the softmax's input, of ``probs``' shape.

    Notes
    -----
    Entries of probability 0 (``-inf`` or masked inputs) get gradient 0 for any
    finite ``grad``; no NaN.

    See Also
    --------
    log_softmax_vjp, softmax_jacobian

    Examples
    --------
    >>> import softmaxkit as smk
    >>> probs = smk.softmax([1.0, 3.0, 2.0])
    >>> smk.softmax_vjp(probs, [1.0, 0.0, 0.0])
    array([ 0.08192507, -0.05989202, -0.02203304])
    """
    xp, plan, p, cotangent, axes = _operands(probs, grad, axis)
    weighted = p * cotangent
    total = reduce_sum(xp, weighted, axes)
    return _finish(xp, plan, weighted - p * total)


def log_softmax_vjp(log_probs: ArrayLike, grad: ArrayLike, /, axis: Axis = -1) -> Array:
    r"""Vector-Jacobian product of log_softmax: ``grad - exp(log_probs) * sum(grad)``.

    Parameters
    ----------
    log_probs : array_like
        The output of :func:`~softmaxkit.log_softmax` along ``axis``.
    grad : array_like
        The gradient with respect to ``log_probs`` (broadcastable to it).
    axis : int, tuple of int or None, default -1
        The axis (axes) the log_softmax normalized.

    Returns
    -------
    array
        The gradient with respect to the log_softmax's input.

    Notes
    -----
    Entries whose ``log_probs`` is ``-inf`` contribute ``exp(-inf) = 0``; only their own
    ``grad`` passes through, and a ``grad`` of 0 there gives 0.

    See Also
    --------
    softmax_vjp, softmaxkit.cross_entropy

    Examples
    --------
    >>> import softmaxkit as smk
    >>> log_probs = smk.log_softmax([1.0, 3.0, 2.0])
    >>> smk.log_softmax_vjp(log_probs, [-1.0, 0.0, 0.0])
    array([-0.90996943,  0.66524096,  0.24472847])
    """
    xp, plan, log_p, cotangent, axes = _operands(log_probs, grad, axis)
    total = reduce_sum(xp, cotangent, axes)
    return _finish(xp, plan, cotangent - xp.exp(log_p) * total)


def softmax_jacobian(x: ArrayLike, /, axis: Int = -1) -> Array:
    r"""The full Jacobian of softmax along one axis: ``diag(p) - p p^T``.

    Parameters
    ----------
    x : array_like
        Scores (logits), any supported array library.
    axis : int, default -1
        The softmax axis.

    Returns
    -------
    array
        Shape ``(..., n, n)``: the other axes first, in order, then
        ``J[..., i, j] = d softmax(x)_i / d x_j``.

    Notes
    -----
    Meant for teaching and checking: it has ``n**2`` entries per row. Use
    :func:`softmax_vjp` for training.

    See Also
    --------
    softmax_vjp

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.softmax_jacobian([0.0, 0.0])
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    xp = array_namespace(x)
    source = as_array(xp, x)
    plan = plan_dtypes(xp, source)
    if source.ndim == 0:
        return _finish(xp, plan, xp.zeros((1, 1), dtype=plan.work, device=device_of(xp, source)))
    axis = single_axis(axis, source.ndim)
    p = xp.astype(softmax(source, axis, dtype=plan.work), plan.work)
    p = xp.moveaxis(p, axis, -1)
    n = p.shape[-1]
    identity = xp.eye(n, dtype=plan.work, device=device_of(xp, p))
    column = xp.expand_dims(p, axis=-1)
    row = xp.expand_dims(p, axis=-2)
    return _finish(xp, plan, column * identity - column * row)
