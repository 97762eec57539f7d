"""The per-row computation shared by the class losses (class axis last): the row
loss and the pieces of its gradient ``coef_p * softmax - q``."""

from __future__ import annotations

import math

import numpy as np

from .._lib._dtypes import _name
from .._lib._namespace import (
    device_of,
)


def _times(xp, coefficient, value):
    """``coefficient * value`` with ``0 * inf = 0``: a zero coefficient takes no part.

    Only the values that are not finite are replaced, so that the derivative with
    respect to the coefficient stays ``value`` where the coefficient is 0 (the
    gradient of binary cross-entropy with respect to a target of 0 or 1).
    """
    zero = xp.zeros_like(value)
    return coefficient * xp.where((coefficient == 0) & ~xp.isfinite(value), zero, value)


def _pick(xp, values, index):
    """``values[..., index]`` along the last axis, one entry per row."""
    expanded = xp.expand_dims(index, axis=-1)
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(values, expanded, axis=-1)[..., 0]
    classes = xp.arange(values.shape[-1], dtype=index.dtype, device=_device(xp, values))
    return xp.sum(xp.where(expanded == classes, values, xp.zeros_like(values)), axis=-1)


def _gather_weight(xp, weight, index):
    flat = xp.reshape(index, (-1,))
    return xp.reshape(xp.take(weight, flat, axis=0), tuple(index.shape))


def _index_row_weight(xp, target, weight, ignore_index, work, like):
    """Per row: the weight of its target class, 0 for ignored rows; and the safe index."""
    active = target != ignore_index
    safe_target = xp.where(active, target, xp.zeros_like(target))
    zero = xp.zeros(tuple(target.shape), dtype=work, device=_device(xp, like))
    if weight is None:
        row_weight = xp.where(active, zero + 1, zero)
    else:
        row_weight = xp.where(active, _gather_weight(xp, weight, safe_target), zero)
    return row_weight, safe_target


def _largest(dtype):
    """The largest finite value of a floating dtype (a NumPy scalar type included)."""
    name = dtype.__name__ if isinstance(dtype, type) else _name(dtype)
    return float(np.finfo(np.dtype(name)).max)


def _device(xp, like):
    return device_of(xp, like)


class _RowTerms:
    """Per-row loss and the coefficients of its gradient ``coef_p * p - q``."""

    __slots__ = (
        "loss",
        "coef_p",
        "target_coef",
        "safe_target",
        "target_log_prob",
        "share",
        "support",
        "q",
    )

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


def _row_terms(xp, log_probs, targets, *, weight, ignore_index, smoothing, lse, z_loss, work):
    """The loss of each row of ``log_probs`` (class axis last) and its gradient pieces.

    With the target distribution ``q`` (one-hot or probabilities, times the class
    weights, with label smoothing spread over the classes that take part), the row
    loss is ``sum(q * -log_probs) + z_loss * w * lse**2`` and its gradient with respect
    to the scaled logits is ``coef_p * softmax - q``, ``coef_p = sum(q) + 2 z w lse``.
    """
    neg_inf = -math.inf
    support = None
    share = None
    count = None
    if smoothing > 0.0 or not targets.is_index:
        # Classes whose log-probability is -inf (logit -inf, or masked) take no part.
        support = ~(log_probs == neg_inf)
    if smoothing > 0.0:
        count = xp.sum(xp.astype(support, work), axis=-1)
        nonempty = count > 0
        share = xp.where(nonempty, smoothing / xp.where(nonempty, count, count + 1), count * 0)

    if targets.is_index:
        row_weight, safe_target = _index_row_weight(
            xp, targets.array, weight, ignore_index, work, log_probs
        )
        picked = xp.astype(_pick(xp, log_probs, safe_target), work)
        loss = _times(xp, (1.0 - smoothing) * row_weight, -picked)
        coef_p = (1.0 - smoothing) * row_weight
        active = row_weight > 0
        if smoothing > 0.0:
            kept = xp.where(support, log_probs, xp.zeros_like(log_probs))
            if weight is None:
                smooth_sum = xp.sum(kept, axis=-1, dtype=work)
                support_weight = count
            else:
                smooth_sum = xp.sum(xp.astype(kept, work) * weight, axis=-1)
                support_weight = xp.sum(xp.where(support, weight, xp.zeros_like(weight)), axis=-1)
            # Rows with a target of weight 0 still take their smoothing term, as in PyTorch;
            # ignored rows take none.
            taking_part = targets.array != ignore_index
            row_share = xp.where(taking_part, share, share * 0)
            loss = loss + _times(xp, row_share, -smooth_sum)
            coef_p = coef_p + row_share * support_weight
            share = row_share
            active = taking_part
        z_weight = row_weight
        q = None
    else:
        probs_target = xp.astype(targets.array, work)
        if smoothing > 0.0:
            spread = xp.where(support, xp.expand_dims(share, axis=-1), xp.zeros_like(probs_target))
            probs_target = (1.0 - smoothing) * probs_target + spread
        q = probs_target if weight is None else probs_target * weight
        neg_log_probs = -xp.astype(log_probs, work)
        loss = xp.sum(_times(xp, q, neg_log_probs), axis=-1)
        coef_p = xp.sum(q, axis=-1)
        row_weight = None
        safe_target = None
        picked = None
        z_weight = None
        active = None

    if z_loss > 0.0:
        finite_lse = xp.where(xp.isfinite(lse), lse, xp.zeros_like(lse))
        # lse**2 overflows (to its honest value, inf) without a floating-point warning.
        too_large = xp.abs(lse) > math.sqrt(_largest(work))
        square = xp.where(
            too_large, xp.abs(lse) + math.inf, xp.where(too_large, xp.zeros_like(lse), lse) ** 2
        )
        if z_weight is None:
            loss = loss + z_loss * square
            coef_p = coef_p + (2.0 * z_loss) * finite_lse
        else:
            loss = loss + z_loss * _times(xp, z_weight, square)
            coef_p = coef_p + (2.0 * z_loss) * (z_weight * finite_lse)
    if active is not None:
        loss = xp.where(active, loss, xp.zeros_like(loss))
    return _RowTerms(
        loss=loss,
        coef_p=coef_p,
        target_coef=None if row_weight is None else (1.0 - smoothing) * row_weight,
        safe_target=safe_target,
        target_log_prob=picked,
        share=share,
        support=support,
        q=q,
    )


def _nonzero_times(xp, values, factor):
    """``values * factor``, where a 0 of ``values`` stays 0 whatever ``factor`` is
    (``0 * inf``: a factor beyond the dtype's range)."""
    return values * xp.where(values == 0, xp.ones_like(values), factor)


def _target_entry(xp, terms, normalized):
    """``coef_p * p_t - target_coef`` at each row's target, without cancellation.

    ``p_t - 1 = expm1(log p_t)``: a confident correct prediction (``p_t`` within
    rounding of 1, as in the limit of a small temperature) keeps its small honest
    value instead of the rounding error of ``p_t`` times the gain.
    """
    if not normalized:
        return -terms.target_coef
    log_p = terms.target_log_prob
    extra = terms.coef_p - terms.target_coef
    return _nonzero_times(xp, xp.exp(log_p), extra) + terms.target_coef * xp.expm1(log_p)


def _gradient(xp, log_probs, terms, row_factor, weight, out=None, normalized=True, derivative=None):
    """``row_factor * (coef_p * exp(log_probs) - q) * derivative``; into ``out`` for NumPy.

    Without ``normalized`` (the gradient of :func:`nll_loss` with respect to its
    log-probabilities) the first term is absent. Each row's difference is formed
    first and its factor (the reduction's scale over the temperature) multiplies
    last, the nonzero entries only: in the limit of a small temperature the factor
    leaves the dtype's range, and the entries that are 0 stay 0 while the others
    become the honest ``±inf``, never NaN (nor the rounding error of ``p * gain``
    minus ``q * gain``).
    """
    if out is not None:
        return _gradient_into(out, log_probs, terms, row_factor, weight, normalized, derivative)
    if normalized:
        # exp in the log-probabilities' dtype, as on the NumPy path: float32 log(1/2)
        # gives 1/2 again, where float64 exp would leave its rounding error (times 1/T).
        probabilities = xp.astype(xp.exp(log_probs), terms.coef_p.dtype)
        grad = _nonzero_times(xp, probabilities, xp.expand_dims(terms.coef_p, axis=-1))
    else:
        grad = xp.zeros(
            tuple(log_probs.shape), dtype=terms.coef_p.dtype, device=_device(xp, log_probs)
        )
    if terms.q is not None:
        grad = grad - terms.q
    else:
        classes = xp.arange(
            log_probs.shape[-1], dtype=terms.safe_target.dtype, device=_device(xp, log_probs)
        )
        one_hot = xp.expand_dims(terms.safe_target, axis=-1) == classes
        target_entry = xp.expand_dims(_target_entry(xp, terms, normalized), axis=-1)
        grad = xp.where(one_hot, target_entry, grad)
        if terms.share is not None:
            spread = xp.expand_dims(terms.share, axis=-1)
            spread = spread if weight is None else spread * weight
            grad = grad - xp.where(terms.support, spread, xp.zeros_like(grad))
    if derivative is not None:
        # A softcap's derivative that underflowed to 0 takes an overflowed entry to 0.
        grad = xp.where(xp.isinf(grad) & (derivative == 0), xp.zeros_like(grad), grad)
        grad = grad * derivative
    factor = xp.expand_dims(row_factor, axis=-1)
    # As _scale_rows: a factor of 0 takes an overflowed entry to 0.
    grad = xp.where(xp.isinf(grad) & (factor == 0), xp.zeros_like(grad), grad)
    return _nonzero_times(xp, grad, factor)


def _gradient_into(out, log_probs, terms, row_factor, weight, normalized, derivative):
    """:func:`_gradient` for NumPy, in place: each row's difference first, its factor last.

    The differences are formed in ``out`` where they fit in its dtype (all but
    extreme weights or z-loss coefficients), else in float64 and then rounded once.
    """
    largest = np.finfo(out.dtype).max / 4
    bound = np.max(np.abs(terms.coef_p), initial=0.0)
    if weight is not None:
        bound += 2 * np.max(weight, initial=0.0)
    inner = out if bound <= largest else np.empty(out.shape, dtype=np.float64)
    if normalized:
        np.exp(log_probs, out=inner)
        if not np.all(terms.coef_p == 1.0):
            _scale_rows(inner, terms.coef_p)
    else:
        inner[...] = 0
    if terms.q is not None:
        inner -= terms.q
    else:
        inner[np.arange(out.shape[0]), terms.safe_target] = _target_entry(np, terms, normalized)
        if terms.share is not None:
            spread = terms.share[:, None]
            spread = spread if weight is None else spread * weight
            inner -= np.where(terms.support, spread, 0.0)
    if derivative is not None:
        overflowed = np.isinf(inner)
        if overflowed.any():
            # A softcap's derivative that underflowed to 0 takes an overflowed entry to 0.
            np.copyto(inner, 0.0, where=overflowed & (derivative == 0))
        inner *= derivative
    if not np.all(row_factor == 1.0):
        _scale_rows(inner, row_factor)
    if inner is not out:
        np.copyto(out, inner, casting="same_kind")
    return out


def _scale_rows(out, factor):
    """``out *= factor[:, None]`` in place, without ``0 * inf``.

    A factor beyond the range of ``out``'s dtype multiplies only the nonzero entries
    of its row (0 stays 0); a factor of 0 (the greedy and uniform limits, or one that
    underflowed) takes an overflowed entry to 0 as it does the finite ones.
    """
    cast = np.asarray(factor, dtype=np.float64).astype(out.dtype)
    finite = np.isfinite(cast)
    zero = cast == 0
    if finite.all() and not zero.any():
        out *= cast[:, None]
        return
    if zero.any():
        np.copyto(out, 0.0, where=np.isinf(out) & zero[:, None])
    np.multiply(out, cast[:, None], out=out, where=(out != 0) | finite[:, None])
