"""The Fenchel-Young losses of the sparse mappings (Blondel, Martins & Niculae 2020)."""

from __future__ import annotations

import math

import numpy as np

from .._lib._call import describe
from .._lib._namespace import array_namespace, as_array, device_of, is_numpy_namespace
from .._lib._typing import Array, ArrayLike, Int, Real, Reduction, Temperature
from .._lib._validation import check_int, check_reduction
from .._softmax import softmax
from ._checks import _check_loss_inputs
from ._gradients import _with_gradient
from ._projection import _project_rows, _shifted_scores
from ._rows import (
    _bisection,
    _check_alpha,
    _from_rows,
    _Method,
    _scalar,
    _temperature_array,
    _temperature_rows,
    _to_rows,
    _without_gradient,
)


def _loss(x, target, axis, alpha, method, weight, ignore_index, reduction, where, temperature):
    check_reduction(reduction)
    check_int("ignore_index", ignore_index)
    check_int("axis", axis)
    xp = array_namespace(x, target, weight, where, _temperature_array(temperature))
    source = as_array(xp, x)
    class_axis, target = _check_loss_inputs(xp, source, target, axis, weight, ignore_index)
    n_classes = source.shape[class_axis]
    valid = target != ignore_index
    state = {}

    def forward(x_in):
        args = describe(x_in, class_axis, temperature=_without_gradient(temperature), where=where)
        xp = args.xp
        work = args.plan.work
        state["args"] = args
        z, perm, permuted_shape = _to_rows(xp, args.x, args.axes)
        keep = None if args.keep is None else _to_rows(xp, args.keep, args.axes)[0]
        t = _temperature_rows(xp, args.temperature, perm, z.ndim - 1)
        zero = _scalar(xp, 0.0, z)
        classes = xp.arange(n_classes, device=device_of(xp, z))
        onehot = (classes == xp.expand_dims(target, axis=-1)) & xp.expand_dims(valid, axis=-1)
        with np.errstate(over="ignore"):
            if alpha == 1.0:
                s = _shifted_scores(xp, z, keep, t)
                p = softmax(s, -1)
            else:
                if method.tol is None and not method.exact:
                    method.tol = float(xp.finfo(args.plan.work).eps) / 4
                p, s = _project_rows(xp, z, keep, t, method, work, scores=True)
            support = p > zero
            if alpha == 2.0:
                omega = (1.0 - xp.sum(p * p, axis=-1)) / 2.0
            elif alpha == 1.0:
                omega = -xp.sum(
                    xp.where(support, p * xp.log(xp.where(support, p, 1.0)), zero), axis=-1
                )
            else:
                powered = xp.where(support, xp.pow(p, _scalar(xp, alpha, p)), zero)
                omega = (1.0 - xp.sum(powered, axis=-1)) / (alpha * (alpha - 1.0))
            # <p - e_y, s>: s is finite on the support; the target's own score may be -inf
            # (a deleted target), which makes the loss +inf.
            inner = xp.sum(p * xp.where(support, s, zero), axis=-1)
            target_score = xp.sum(xp.where(onehot, s, zero), axis=-1)
            per_sample = xp.where(valid, omega + inner - target_score, zero)
            per_sample = xp.where(valid, xp.maximum(per_sample, zero), zero)
        factor = xp.where(xp.expand_dims(valid, axis=-1), p - xp.astype(onehot, work), zero)
        if isinstance(t, float):
            if t in (0.0, math.inf):
                factor = xp.zeros_like(factor)
            elif t != 1.0:
                factor = factor / t
        else:
            edge = (t == zero) | (t == math.inf)
            factor = xp.where(edge, zero, factor / xp.where(edge, 1.0, t))
        factor = _from_rows(xp, factor, perm, permuted_shape)
        return args.finish(per_sample), args.finish(factor)

    def backward(saved, g):
        xp = state["args"].xp
        return xp.expand_dims(g, axis=class_axis) * saved

    per_sample = _with_gradient(source, forward, backward)
    xp_out = array_namespace(per_sample)
    if weight is not None:
        weight = as_array(xp_out, weight, like=per_sample)
        safe_target = xp_out.where(valid, target, xp_out.zeros_like(target))
        flat = xp_out.reshape(safe_target, (-1,))
        sample_weight = xp_out.reshape(xp_out.take(weight, flat, axis=0), tuple(target.shape))
        sample_weight = xp_out.where(
            valid, xp_out.astype(sample_weight, per_sample.dtype), xp_out.zeros_like(per_sample)
        )
    else:
        sample_weight = xp_out.astype(valid, per_sample.dtype)
    weighted = per_sample * sample_weight
    if reduction == "none":
        return weighted
    total = xp_out.sum(weighted)
    if reduction == "sum":
        # A 0-d array, as for "mean" (NumPy's sum gives a NumPy scalar).
        return np.asarray(total) if is_numpy_namespace(xp_out) else total
    denominator = xp_out.sum(sample_weight)
    # Every target ignored: 0, not 0/0.
    return xp_out.where(
        denominator == 0,
        xp_out.zeros_like(total),
        total / xp_out.where(denominator == 0, xp_out.ones_like(denominator), denominator),
    )


_LOSS_DOC = r"""

    The Fenchel-Young loss ``Omega(p) + <p - e_y, z>`` with ``z = x / T``,
    ``p`` the mapping of ``z`` and ``Omega`` the Tsallis entropy
    ``(1 - sum p ** alpha) / (alpha (alpha - 1))`` (Blondel, Martins & Niculae
    2020). It is >= 0, is 0 exactly when ``p`` is the one-hot target, and its
    gradient is ``(p - e_y) / T``.

    Parameters
    ----------
    x : array_like
        Scores (logits) with the classes along ``axis``.
    target : array_like of int
        Class indices, of the shape of ``x`` without ``axis``.
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        One weight per class, as in PyTorch's ``cross_entropy``.
    ignore_index : int, default -100
        Targets equal to it contribute nothing (loss and gradient 0).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'`` is the weighted mean over the targets not ignored (``sum(w_y l)
        / sum(w_y)``), 0 when all are ignored.
    where : array of bool, optional
        Keep-mask; False classes are deleted (a deleted target gives ``inf``).
    temperature : float or array, default 1.0
        ``x`` is divided by it.
"""


def sparsemax_loss(
    x: ArrayLike,
    target: ArrayLike,
    /,
    axis: Int = -1,
    *,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    reduction: Reduction = "mean",
    where: ArrayLike | None = None,
    temperature: Temperature = 1.0,
) -> Array:
    """Sparsemax loss (Martins & Astudillo 2016)."""
    return _loss(
        x,
        target,
        axis,
        2.0,
        _Method(2.0, exact=True),
        weight,
        ignore_index,
        reduction,
        where,
        temperature,
    )


def entmax15_loss(
    x: ArrayLike,
    target: ArrayLike,
    /,
    axis: Int = -1,
    *,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    reduction: Reduction = "mean",
    where: ArrayLike | None = None,
    temperature: Temperature = 1.0,
) -> Array:
    """1.5-entmax loss (Peters, Niculae & Martins 2019)."""
    return _loss(
        x,
        target,
        axis,
        1.5,
        _Method(1.5, exact=True),
        weight,
        ignore_index,
        reduction,
        where,
        temperature,
    )


def entmax_loss(
    x: ArrayLike,
    target: ArrayLike,
    /,
    axis: Int = -1,
    *,
    alpha: Real = 1.5,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    reduction: Reduction = "mean",
    where: ArrayLike | None = None,
    temperature: Temperature = 1.0,
    n_iter: Int = 50,
    tol: Real | None = None,
) -> Array:
    """alpha-entmax loss, by bisection (``alpha = 1`` is the cross-entropy)."""
    alpha = _check_alpha(alpha)
    method = _bisection(alpha, n_iter, tol)
    return _loss(
        x, target, axis, alpha, method, weight, ignore_index, reduction, where, temperature
    )


sparsemax_loss.__doc__ += (
    _LOSS_DOC
    + """
    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.sparsemax_loss([[1.0, 3.0, 2.5]], [1]))
    0.0625
    >>> float(smk.sparsemax_loss([[1.0, 5.0, 2.5]], [1]))
    0.0
"""
)
entmax15_loss.__doc__ += (
    _LOSS_DOC
    + """
    Examples
    --------
    >>> import softmaxkit as smk
    >>> round(float(smk.entmax15_loss([[1.0, 3.0, 2.5]], [2])), 6)
    0.684371
"""
)
entmax_loss.__doc__ += (
    _LOSS_DOC
    + """    alpha : float, default 1.5
        A finite number >= 1.
    n_iter, tol
        As in :func:`entmax`.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.entmax_loss([[1.0, 3.0, 2.5]], [1], alpha=2.0))
    0.0625
"""
)
