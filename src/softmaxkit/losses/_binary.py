"""The sigmoid family: :func:`sigmoid`, :func:`log_sigmoid` and the binary cross-entropies."""

from __future__ import annotations

import numbers

import array_api_compat
import numpy as np

from .._lib._dtypes import plan_dtypes
from .._lib._namespace import (
    array_namespace,
    as_array,
    is_numpy_namespace,
    is_tensorflow,
)
from .._lib._typing import Array, ArrayLike, Reduction
from .._lib._validation import (
    broadcast_operand,
    check_reduction,
)
from ._checks import (
    _check_nonnegative,
    _check_probabilities,
    _overflow_is_inf,
)
from ._rows import _times


class _Elementwise:
    """Validated element-wise input: namespace, source, working array, dtype plan."""

    def __init__(self, x, *others):
        present = [a for a in others if a is not None and not isinstance(a, numbers.Number)]
        self.xp = xp = array_namespace(x, *present)
        source = as_array(xp, x)
        self.plan = plan_dtypes(xp, source)
        self.source = source
        self.x = xp.astype(source, self.plan.work)

    def operand(self, value, name):
        xp = self.xp
        if array_api_compat.is_array_api_obj(value) and not is_tensorflow(value):
            # Converted by astype, which keeps autograd (PyTorch's asarray of a tensor
            # that requires grad warns), and then only broadcast.
            value = xp.astype(as_array(xp, value, like=self.x), self.plan.work, copy=False)
            return broadcast_operand(xp, value, self.x, name)
        return broadcast_operand(xp, value, self.x, name, dtype=self.plan.work)

    def finish(self, result, reduction="none"):
        xp = self.xp
        if reduction == "sum":
            result = xp.sum(xp.reshape(result, (-1,)))
        elif reduction == "mean":
            flat = xp.reshape(result, (-1,))
            count = flat.shape[0]
            result = xp.sum(flat) / count if count else xp.sum(flat)
        result = xp.astype(result, self.plan.result)
        if is_numpy_namespace(xp):
            return np.asarray(result)
        return result


def _minus_abs(xp, x, positive):
    """``-|x|``, split at the same point as the caller's ``positive``.

    Autograd gives ``abs`` the derivative 0 at 0 (and ``where`` the derivative of one
    branch at the tie): the two halves of a formula split at 0 must take the same
    side there, or the gradient at 0 loses one half (``softplus'(0)`` came out 0).
    """
    return xp.where(positive, -x, x)


def _softplus(xp, x):
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``."""
    zero = xp.zeros_like(x)
    positive = x > zero
    return xp.where(positive, x, zero) + xp.log1p(xp.exp(_minus_abs(xp, x, positive)))


def _log_sigmoid(xp, x):
    return -_softplus(xp, -x)


@_overflow_is_inf
def sigmoid(x: ArrayLike, /) -> Array:
    r"""The logistic function ``1 / (1 + exp(-x))``, without overflow for any ``x``.

    Parameters
    ----------
    x : array_like
        Any supported array library. Integer input is converted to the default
        floating dtype; float32 is computed in float64 where available.

    Returns
    -------
    array
        ``sigmoid(x)`` in ``x``'s library and floating dtype.

    Notes
    -----
    Written with ``e = exp(-|x|) <= 1`` as ``1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` below, so that ``exp`` never overflows: ``sigmoid(-1000)`` is
    0 and ``sigmoid(1000)`` is 1, without a warning.

    See Also
    --------
    log_sigmoid, softmaxkit.softmax

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.sigmoid([-1000.0, 0.0, 2.0, 1000.0])
    array([0.        , 0.5       , 0.88079708, 1.        ])
    """
    args = _Elementwise(x)
    xp = args.xp
    positive = args.x >= 0
    decay = xp.exp(_minus_abs(xp, args.x, positive))
    one = xp.zeros_like(decay) + 1  # TensorFlow's adapter has no ones_like
    return args.finish(xp.where(positive, one, decay) / (one + decay))


@_overflow_is_inf
def log_sigmoid(x: ArrayLike, /) -> Array:
    r"""``log(sigmoid(x)) = -log(1 + exp(-x))``, without overflow or ``log(0)``.

    Parameters
    ----------
    x : array_like
        Any supported array library.

    Returns
    -------
    array
        ``log(sigmoid(x))``: ``x`` itself for very negative ``x``, and
        ``-exp(-x)`` (not 0) for large positive ``x``.

    Notes
    -----
    ``min(x, 0) - log1p(exp(-|x|))``: the ``exp`` argument is never positive, and
    ``log1p`` keeps the tiny values for large ``x``.

    See Also
    --------
    sigmoid, binary_cross_entropy_with_logits

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.log_sigmoid([-1000.0, 0.0, 40.0])
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    """
    args = _Elementwise(x)
    return args.finish(_log_sigmoid(args.xp, args.x))


@_overflow_is_inf
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    /,
    *,
    pos_weight: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> Array:
    r"""Binary cross-entropy of probabilities ``target`` under ``sigmoid(logits)``.

    The semantics of ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Parameters
    ----------
    logits : array_like
        Scores, any supported array library.
    target : array_like
        Probabilities of the positive class, broadcastable to ``logits``.
    pos_weight : array_like, optional
        Weight of the positive term, broadcastable to ``logits`` (one per class on
        the last axis, as in PyTorch); must be >= 0.
    weight : array_like, optional
        Element-wise weight of the loss, broadcastable to ``logits``; must be >= 0.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by the number of elements.

    Returns
    -------
    array
        The loss, element-wise for "none".

    Raises
    ------
    ValueError
        For an unknown reduction, a negative ``weight`` or ``pos_weight``, or
        operands that do not broadcast.

    Notes
    -----
    Computed as ``pos_weight * t * softplus(-x) + (1 - t) * softplus(x)``: both
    terms are non-negative, so nothing cancels, no ``exp`` overflows (the loss at
    ``x = -1000, t = 1`` is exactly 1000) and a zero coefficient takes no part
    (``x = inf, t = 1`` gives 0; PyTorch gives NaN).

    See Also
    --------
    binary_cross_entropy, log_sigmoid, cross_entropy

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.binary_cross_entropy_with_logits([-1000.0, 0.0, 1000.0], [1.0, 0.5, 0.0],
    ...                                      reduction="none")
    array([1.00000000e+03, 6.93147181e-01, 1.00000000e+03])
    """
    check_reduction(reduction)
    args = _Elementwise(logits, target, pos_weight, weight)
    xp = args.xp
    t = args.operand(target, "target")
    positive = _softplus(xp, -args.x)
    negative = _softplus(xp, args.x)
    if pos_weight is not None:
        pos = _check_nonnegative(args, pos_weight, "pos_weight")
        positive_coefficient = pos * t
    else:
        positive_coefficient = t
    result = _times(xp, positive_coefficient, positive) + _times(xp, 1 - t, negative)
    if weight is not None:
        result = _times(xp, _check_nonnegative(args, weight, "weight"), result)
    return args.finish(result, reduction)


@_overflow_is_inf
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    /,
    *,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> Array:
    r"""Binary cross-entropy of ``target`` under probabilities ``probs``.

    The semantics of ``torch.nn.functional.binary_cross_entropy``, logarithms
    clamped at -100 as there, so that ``probs`` of exactly 0 or 1 give a finite loss.

    Parameters
    ----------
    probs : array_like
        Probabilities in [0, 1], any supported array library.
    target : array_like
        Probabilities of the positive class, broadcastable to ``probs``.
    weight : array_like, optional
        Element-wise weight, broadcastable to ``probs``; must be >= 0.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    array
        The loss, element-wise for "none".

    Raises
    ------
    ValueError
        For ``probs`` outside [0, 1], a negative ``weight`` or an unknown reduction.

    Notes
    -----
    ``-(t * max(log(p), -100) + (1 - t) * max(log1p(-p), -100))``; ``log1p`` keeps
    ``log(1 - p)`` accurate for small ``p``. Prefer
    :func:`binary_cross_entropy_with_logits` where the logits exist.

    See Also
    --------
    binary_cross_entropy_with_logits

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.binary_cross_entropy([0.0, 0.5, 1e-10], [1.0, 1.0, 0.0], reduction="none")
    array([1.00000000e+02, 6.93147181e-01, 1.00000000e-10])
    """
    check_reduction(reduction)
    args = _Elementwise(probs, target, weight)
    xp = args.xp
    p = args.x
    _check_probabilities(xp, p)
    t = args.operand(target, "target")
    zero = xp.zeros_like(p)  # TensorFlow's adapter has neither full_like nor ones_like
    floor = zero - 100.0
    one = zero + 1
    # log(0) is avoided, not clamped after the fact: no divide-by-zero warning.
    log_p = xp.where(p > 0, xp.log(xp.where(p > 0, p, one)), floor)
    log_not_p = xp.where(p < 1, xp.log1p(-xp.where(p < 1, p, p * 0)), floor)
    # The clamp of torch.clamp(min=-100): at log(p) = -100 exactly the gradient is that
    # of log(p) (maximum would give it half).
    log_p = xp.where(log_p >= floor, log_p, floor)
    log_not_p = xp.where(log_not_p >= floor, log_not_p, floor)
    result = -(t * log_p + (1 - t) * log_not_p)
    if weight is not None:
        result = _times(xp, _check_nonnegative(args, weight, "weight"), result)
    return args.finish(result, reduction)
