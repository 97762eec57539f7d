"""Losses: cross-entropy, negative log-likelihood, the sigmoid family, KL divergence, entropy.

Written once against the array namespace ``xp``; every backend runs this code, and
PyTorch and JAX inputs keep their autograd. The normalisation itself is the core's
:func:`~softmaxkit.log_softmax` (one call per block of rows), so the per-row loss
``lse - x_target`` has the core's accuracy, and the compiled NumPy kernel, where
present, serves the NumPy forward and backward. The common NumPy cross-entropy call
(class indices, scalar temperature, no mask, no label smoothing) takes a shorter
road: one kernel run per block writes the scaled softmax into the gradient and
returns each row's normaliser, and one scatter subtracts the target.
"""

from __future__ import annotations

import functools
import math
import numbers

import array_api_compat
import numpy as np

from . import _kernels
from ._lib._dtypes import _kind, _name, plan_dtypes
from ._lib._namespace import (
    array_namespace,
    as_array,
    device_of,
    is_lazy,
    is_numpy_namespace,
    is_tensorflow,
)
from ._lib._shifted_exp import reduce_sum
from ._lib._validation import broadcast_mask, broadcast_operand, check_temperature, normalize_axis
from ._logsumexp import logsumexp
from ._softmax import log_softmax, softmax

__all__ = [
    "cross_entropy",
    "nll_loss",
    "sigmoid",
    "log_sigmoid",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "kl_divergence",
    "entropy",
]

_REDUCTIONS = ("mean", "sum", "none")

# Rows per block of the NumPy path: about 2**20 entries, so that the temporaries of a
# block stay a few tens of MB while each call is long enough to amortise its overhead.
_BLOCK_ENTRIES = 1 << 20
_FAST_BLOCK_ENTRIES = 1 << 24


def _overflow_is_inf(function):
    """``function`` with NumPy's overflow warning off.

    A loss or gradient beyond the dtype's range (a temperature near 0, logits or
    weights near the largest float) is the honest ``inf``, on NumPy and on libraries
    that compute with it (array_api_strict). No NaN is made, so no warning is hidden.
    """

    @functools.wraps(function)
    def without_overflow_warning(*args, **kwargs):
        with np.errstate(over="ignore"):
            return function(*args, **kwargs)

    return without_overflow_warning


# --------------------------------------------------------------------------------------
# argument checks


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")


def _check_real(name, value, *, low=None, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return value


def _any_known(xp, bad):
    """Whether ``bad`` holds anywhere, when its values are known (not under a JAX trace)."""
    found = xp.any(bad)
    return not is_lazy(found) and bool(found)


def _first_value(xp, array, bad):
    """The first entry of ``array`` where ``bad`` holds, as a Python number (for messages)."""
    if hasattr(array, "detach"):
        array, bad = array.detach().cpu(), bad.detach().cpu()
    values = np.asarray(array)[np.asarray(bad)]
    value = values.ravel()[0]
    return value.item() if hasattr(value, "item") else value


def _class_axis(axis, ndim, name):
    if ndim == 0:
        raise ValueError(f"{name} must have a class axis, got a 0-d array")
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"axis must be a single int (the class axis), got {axis!r}")
    return normalize_axis(axis, ndim)[0]


def _check_weight(xp, weight, n_classes, like, dtype):
    weight = as_array(xp, weight, like=like, dtype=dtype)
    if tuple(weight.shape) != (n_classes,):
        raise ValueError(
            f"weight must be a 1-D array with one entry per class ({n_classes}), "
            f"got shape {tuple(weight.shape)}"
        )
    if not is_lazy(weight):
        bad = ~((weight >= 0) & (weight < math.inf))
        if _any_known(xp, bad):
            raise ValueError(
                f"weight must be finite and >= 0, got {_first_value(xp, weight, bad)!r}"
            )
    return weight


class _Targets:
    """The target of a class loss: indices (``is_index``) or probabilities."""

    __slots__ = ("array", "is_index")

    def __init__(self, array, is_index):
        self.array = array
        self.is_index = is_index


def _index_dtype(xp, like):
    """The library's default index dtype (int64; int32 for JAX without 64-bit types)."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=device_of(xp, like))["indexing"]
        except Exception:  # libraries whose info() does not take a device
            pass
    return xp.int64


def _as_index(xp, target, ignore_index, n_classes):
    """Integer class indices in the library's index dtype.

    The indexing functions of PyTorch take int64 indices only, and comparing an
    unsigned target with a negative ``ignore_index`` wraps the latter around in
    PyTorch and JAX (uint8 156 equals -100 there). Every index dtype holds every
    valid class index; larger unsigned values are out of range, reported before the
    conversion could wrap them to negative numbers.
    """
    index_dtype = _index_dtype(xp, target)
    if target.dtype == index_dtype:
        return target
    largest = xp.iinfo(index_dtype).max
    if not is_lazy(target) and xp.iinfo(target.dtype).max > largest:
        bad = target > largest
        if _any_known(xp, bad):
            raise ValueError(
                f"target must hold class indices in [0, {n_classes}) or "
                f"ignore_index={ignore_index}, got {_first_value(xp, target, bad)!r}"
            )
    return xp.astype(target, index_dtype)


def _check_target(xp, target, x, axis, ignore_index, like):
    target = as_array(xp, target, like=like)
    kind = _kind(xp, target.dtype)
    shape = tuple(x.shape)
    batch_shape = shape[:axis] + shape[axis + 1 :]
    if kind == "integral":
        if tuple(target.shape) != batch_shape:
            raise ValueError(
                f"target of integer dtype holds class indices and must have the shape of the "
                f"logits without the class axis {axis}, {batch_shape}; got {tuple(target.shape)}"
            )
        n_classes = shape[axis]
        target = _as_index(xp, target, ignore_index, n_classes)
        if not is_lazy(target):
            bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
            if _any_known(xp, bad):
                raise ValueError(
                    f"target must hold class indices in [0, {n_classes}) or "
                    f"ignore_index={ignore_index}, got {_first_value(xp, target, bad)!r}"
                )
        return _Targets(target, True)
    if kind in ("real", "half"):
        if tuple(target.shape) != shape:
            raise ValueError(
                f"target of floating dtype holds class probabilities and must have the shape "
                f"of the logits {shape}; got {tuple(target.shape)} (class indices need an "
                f"integer dtype and shape {batch_shape})"
            )
        return _Targets(target, False)
    raise TypeError(
        f"target must hold integer class indices or floating class probabilities, "
        f"got dtype {_name(target.dtype)}"
    )


# --------------------------------------------------------------------------------------
# the shared per-row computation (class axis last)


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


def _target_entry(xp, terms, normalised):
    """``coef_p * p_t - target_coef`` at each row's target, without cancellation.

    ``p_t - 1 = expm1(log p_t)``: a confident correct prediction (``p_t`` within
    rounding of 1, as in the limit of a small temperature) keeps its small honest
    value instead of the rounding error of ``p_t`` times the gain.
    """
    if not normalised:
        return -terms.target_coef
    log_p = terms.target_log_prob
    extra = terms.coef_p - terms.target_coef
    return _nonzero_times(xp, xp.exp(log_p), extra) + terms.target_coef * xp.expm1(log_p)


def _gradient(xp, log_probs, terms, row_factor, weight, out=None, normalised=True, derivative=None):
    """``row_factor * (coef_p * exp(log_probs) - q) * derivative``; into ``out`` for NumPy.

    Without ``normalised`` (the gradient of :func:`nll_loss` with respect to its
    log-probabilities) the first term is absent. Each row's difference is formed
    first and its factor (the reduction's scale over the temperature) multiplies
    last, the nonzero entries only: in the limit of a small temperature the factor
    leaves the dtype's range, and the entries that are 0 stay 0 while the others
    become the honest ``±inf``, never NaN (nor the rounding error of ``p * gain``
    minus ``q * gain``).
    """
    if out is not None:
        return _gradient_into(out, log_probs, terms, row_factor, weight, normalised, derivative)
    if normalised:
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
        target_entry = xp.expand_dims(_target_entry(xp, terms, normalised), axis=-1)
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


def _gradient_into(out, log_probs, terms, row_factor, weight, normalised, derivative):
    """:func:`_gradient` for NumPy, in place: each row's difference first, its factor last.

    The differences are formed in ``out`` where they fit in its dtype (all but
    extreme weights or z-loss coefficients), else in float64 and then rounded once.
    """
    largest = np.finfo(out.dtype).max / 4
    bound = np.max(np.abs(terms.coef_p), initial=0.0)
    if weight is not None:
        bound += 2 * np.max(weight, initial=0.0)
    inner = out if bound <= largest else np.empty(out.shape, dtype=np.float64)
    if normalised:
        np.exp(log_probs, out=inner)
        if not np.all(terms.coef_p == 1.0):
            _scale_rows(inner, terms.coef_p)
    else:
        inner[...] = 0
    if terms.q is not None:
        inner -= terms.q
    else:
        inner[np.arange(out.shape[0]), terms.safe_target] = _target_entry(np, terms, normalised)
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


# --------------------------------------------------------------------------------------
# cross_entropy and nll_loss


class _ClassLoss:
    """Validated arguments of a class loss, with the class axis moved last."""

    def __init__(
        self,
        values,
        target,
        axis,
        *,
        weight,
        ignore_index,
        label_smoothing,
        reduction,
        temperature,
        where,
        name,
    ):
        _check_reduction(reduction)
        self.smoothing = _check_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        temperature_array = None if isinstance(temperature, numbers.Real) else temperature
        weight_array = None if weight is None or isinstance(weight, (list, tuple)) else weight
        target_array = None if isinstance(target, (list, tuple, numbers.Number)) else target
        xp = array_namespace(values, target_array, weight_array, where, temperature_array)
        source = as_array(xp, values)
        plan = plan_dtypes(xp, source)
        axis = _class_axis(axis, source.ndim, name)
        n_classes = source.shape[axis]
        self.targets = _check_target(xp, target, source, axis, ignore_index, source)
        self.weight = (
            None if weight is None else _check_weight(xp, weight, n_classes, source, plan.work)
        )
        self.temperature = check_temperature(xp, temperature, source, (axis,), plan.work)
        keep = None if where is None else broadcast_mask(xp, where, source)
        self.xp, self.plan, self.axis = xp, plan, axis
        self.ignore_index, self.reduction = int(ignore_index), reduction
        # Class axis last: the rows are the leading axes.
        self.values = xp.moveaxis(source, axis, -1)
        self.keep = None if keep is None else xp.moveaxis(keep, axis, -1)
        if not self.targets.is_index:
            self.targets.array = xp.moveaxis(self.targets.array, axis, -1)
        if not isinstance(self.temperature, float):
            self.temperature = xp.moveaxis(self.temperature, axis, -1)
        # float16/bfloat16 log-probabilities are kept in float32.
        self.log_probs_dtype = plan.work if _kind(xp, plan.result) == "half" else None

    def denominator(self):
        """The divisor of the mean: the total target weight, or the number of rows."""
        xp = self.xp
        if self.targets.is_index:
            row_weight, _ = _index_row_weight(
                xp, self.targets.array, self.weight, self.ignore_index, self.plan.work, self.values
            )
            return xp.sum(xp.reshape(row_weight, (-1,)))
        return math.prod(self.values.shape[:-1])

    def row_factor(self, scale, temperature):
        """Per-row multiplier of the gradient: the reduction's scale over the temperature."""
        if isinstance(temperature, float):
            if temperature == 0.0 or math.isinf(temperature):
                # The greedy limit is piecewise constant; the uniform limit ignores x.
                return scale * 0.0
            return scale / temperature
        xp = self.xp
        t = temperature[..., 0]
        degenerate = (t == 0) | xp.isinf(t)
        return xp.where(
            degenerate, xp.zeros_like(t), scale / xp.where(degenerate, xp.ones_like(t), t)
        )

    def finish_loss(self, row_loss, denominator):
        xp = self.xp
        if self.reduction == "none":
            result = row_loss
        else:
            total = xp.sum(xp.reshape(row_loss, (-1,)), dtype=self.plan.work)
            if self.reduction == "mean":
                # A batch without weight (every target ignored) has mean 0, not 0/0.
                empty = denominator == 0
                if isinstance(denominator, int):
                    result = xp.zeros_like(total) if empty else total / denominator
                else:
                    safe = xp.where(empty, xp.ones_like(denominator), denominator)
                    result = xp.where(empty, xp.zeros_like(total), total / safe)
            else:
                result = total
        result = xp.astype(result, self.plan.result)
        if is_numpy_namespace(xp):
            return np.asarray(result)
        return result


def _mean_scale(xp, loss, denominator):
    if loss.reduction != "mean":
        return 1.0
    if isinstance(denominator, int):
        return 0.0 if denominator == 0 else 1.0 / denominator
    empty = denominator == 0
    return xp.where(empty, denominator * 0, 1.0 / xp.where(empty, denominator + 1, denominator))


def _softcapped(xp, values, softcap, plan, workspace=None):
    """``softcap * tanh(values / softcap)`` (``-inf`` kept) and its derivative.

    Computed in the working dtype and returned in the result dtype, so that
    ``log_softmax`` sees logits of the caller's floating dtype (its fast path).
    """
    if isinstance(values, np.ndarray) and plan.result == np.float32:
        return _softcapped_float32(values, softcap, workspace)
    work = xp.astype(values, plan.work)
    tanh = xp.tanh(work / softcap)
    neg_inf = work == -math.inf
    capped = xp.where(neg_inf, work, softcap * tanh)
    return xp.astype(capped, plan.result), 1.0 - tanh * tanh


def _softcapped_float32(values, softcap, workspace=None):
    """:func:`_softcapped` for NumPy float32 logits, in float64 without ``np.tanh``.

    NumPy's float64 ``tanh`` is a scalar loop, several times slower than the rest of the
    cross-entropy. With ``e = exp(-2|u|)`` in (0, 1], ``|tanh u| = (1 - e) / (1 + e)``
    and ``1 - tanh(u)**2 = 4 e / (1 + e)**2``: no cancellation in the derivative, and a
    relative error below 1e-13 in ``tanh`` where ``|u| >= 2**-10`` (``1 - e`` loses
    ``log2(1 / 2|u|)`` bits); below that, ``u - u**3 / 3`` is as close. Both are far
    below float32's resolution, so the capped logits round as those of ``np.tanh``.

    ``workspace`` (a :class:`_SoftcapWorkspace`) holds the block-sized buffers, so that
    the blocks of one call reuse them instead of mapping fresh memory for each.
    """
    if workspace is None:
        workspace = _SoftcapWorkspace(values.shape)
    u, e, denominator, tanh, mask, capped = workspace.views(values.shape[0])
    np.divide(values, softcap, out=u, dtype=np.float64)
    np.abs(u, out=e)
    small = np.less(e, 2.0**-10, out=mask)
    small_index = np.flatnonzero(small) if small.any() else None
    e *= -2.0
    np.exp(e, out=e)
    np.add(e, 1.0, out=denominator)
    np.subtract(1.0, e, out=tanh)
    tanh /= denominator
    if small_index is not None:
        tiny = np.abs(u.reshape(-1)[small_index])
        tanh.reshape(-1)[small_index] = tiny - tiny**3 / 3.0
    np.copysign(tanh, u, out=tanh)
    tanh *= softcap
    np.copyto(tanh, u, where=np.equal(u, -math.inf, out=mask))
    np.copyto(capped, tanh)
    derivative = e
    derivative *= 4.0
    derivative /= denominator
    derivative /= denominator
    return capped, derivative


class _SoftcapWorkspace:
    """Buffers of :func:`_softcapped_float32` for blocks of up to ``shape[0]`` rows."""

    def __init__(self, shape):
        self.buffers = [np.empty(shape, dtype=np.float64) for _ in range(4)]
        self.buffers.append(np.empty(shape, dtype=np.bool_))
        self.buffers.append(np.empty(shape, dtype=np.float32))

    def views(self, n_rows):
        return [buffer[:n_rows] for buffer in self.buffers]


def _block(
    loss,
    values,
    targets,
    keep,
    temperature,
    scale,
    *,
    z_loss,
    softcap,
    want_grad,
    out,
    normalise,
    workspace=None,
):
    """Row losses (and the gradient, into ``out`` for NumPy) of a block of rows."""
    xp = loss.xp
    work = loss.plan.work
    capped_derivative = None
    if softcap is not None:
        values, capped_derivative = _softcapped(xp, values, softcap, loss.plan, workspace)
    if normalise:
        log_probs = _block_log_probs(loss, values, keep, temperature)
    else:
        log_probs = values
    lse = None
    if z_loss > 0.0:
        lse = logsumexp(values, -1, temperature=temperature, where=keep, dtype=work)
    terms = _row_terms(
        xp,
        log_probs,
        targets,
        weight=loss.weight,
        ignore_index=loss.ignore_index,
        smoothing=loss.smoothing,
        lse=lse,
        z_loss=z_loss,
        work=work,
    )
    if not want_grad:
        return terms.loss, None
    row_factor = loss.row_factor(scale, temperature)
    if isinstance(row_factor, float):
        row_factor = xp.full(
            tuple(log_probs.shape[:-1]), row_factor, dtype=work, device=_device(xp, log_probs)
        )
    elif len(tuple(row_factor.shape)) < len(tuple(log_probs.shape)) - 1:
        row_factor = xp.broadcast_to(row_factor, tuple(log_probs.shape[:-1]))
    grad = _gradient(
        xp,
        log_probs,
        terms,
        row_factor,
        loss.weight,
        out=out,
        normalised=normalise,
        derivative=capped_derivative,
    )
    return terms.loss, grad


# The compiled float32 kernel gives NaN for rows of fewer than 8 entries at a temperature
# of 2**900 or more; those blocks are normalised in float64.
_FLOAT32_KERNEL_LARGEST_TEMPERATURE = 2.0**899


def _block_log_probs(loss, values, keep, temperature):
    """The block's log-probabilities: in the logits' dtype, or in the working dtype where
    the former would make a finite log-probability ``-inf``.

    float32 log-probabilities overflow to ``-inf`` where ``(max - x) / T`` exceeds
    float32's range (a small temperature); such a class would count as absent (no
    label smoothing there) and its loss be inf where the float64 work keeps it finite.
    """
    xp, work, dtype = loss.xp, loss.plan.work, loss.log_probs_dtype
    if (
        dtype is None
        and is_numpy_namespace(xp)
        and values.dtype == np.float32
        and np.max(temperature) >= _FLOAT32_KERNEL_LARGEST_TEMPERATURE
    ):
        dtype = work
    log_probs = log_softmax(values, -1, temperature=temperature, where=keep, dtype=dtype)
    if log_probs.dtype == work or not _overflowed(xp, log_probs, values, keep, temperature):
        return log_probs
    return log_softmax(values, -1, temperature=temperature, where=keep, dtype=work)


def _overflowed(xp, log_probs, values, keep, temperature):
    """Whether a log-probability is ``-inf`` where its class takes part (a finite or
    ``+inf`` logit, kept, at a positive temperature)."""
    absent = log_probs == -math.inf
    if not _any_known(xp, absent):
        return False
    taking_part = absent & (values > -math.inf)
    if keep is not None:
        taking_part = taking_part & keep
    if isinstance(temperature, float):
        return temperature > 0.0 and _any_known(xp, taking_part)
    return _any_known(xp, taking_part & (temperature > 0))


def _run(loss, *, z_loss, softcap, return_grad, normalise):
    xp = loss.xp
    denominator = loss.denominator() if loss.reduction == "mean" else None
    scale = _mean_scale(xp, loss, denominator) if return_grad else 1.0
    if not isinstance(scale, float) and is_numpy_namespace(xp):
        scale = float(scale)
    common = dict(z_loss=z_loss, softcap=softcap, want_grad=return_grad, normalise=normalise)
    if is_numpy_namespace(xp):
        row_loss, grad = _run_numpy_blocks(loss, scale, common)
    else:
        row_loss, grad = _block(
            loss, loss.values, loss.targets, loss.keep, loss.temperature, scale, out=None, **common
        )
    result = loss.finish_loss(row_loss, denominator)
    if not return_grad:
        return result
    grad = xp.moveaxis(xp.astype(grad, loss.plan.result, copy=False), -1, loss.axis)
    if is_numpy_namespace(xp):
        grad = np.asarray(grad)
    return result, grad


def _run_numpy_blocks(loss, scale, common):
    """The NumPy path: blocks of rows, so that no temporary has the size of the logits."""
    values = loss.values
    batch_shape = tuple(values.shape[:-1])
    n_classes = values.shape[-1]
    n_rows = math.prod(batch_shape)
    flat = values.reshape(n_rows, n_classes)
    keep = None if loss.keep is None else np.broadcast_to(loss.keep, values.shape)
    if keep is not None and all(stride == 0 for stride in keep.strides[:-1]):
        # One mask for every row (the usual per-class mask): no copy of the logits' size.
        keep = keep[(0,) * (keep.ndim - 1)]
        keep_rows = False
    else:
        keep = None if keep is None else keep.reshape(n_rows, n_classes)
        keep_rows = keep is not None
    temperature = loss.temperature
    if not isinstance(temperature, float):
        temperature = np.broadcast_to(temperature, batch_shape + (1,)).reshape(n_rows, 1)
    if loss.targets.is_index:
        target = loss.targets.array.reshape(n_rows)
    else:
        target = loss.targets.array.reshape(n_rows, n_classes)
    row_loss = np.empty(n_rows, dtype=loss.plan.work)
    grad = None
    if common["want_grad"]:
        grad = np.empty((n_rows, n_classes), dtype=loss.plan.result)
    step = max(1, _BLOCK_ENTRIES // max(n_classes, 1))
    fast = _fast_path_applies(loss, temperature, n_classes, common)
    if fast and grad is not None and common["softcap"] is None:
        # The fused kernel writes the gradient itself, with temporaries of one value
        # per row: larger blocks, fewer calls (each starts its threads).
        step = max(1, _FAST_BLOCK_ENTRIES // max(n_classes, 1))
    scratch = None
    if fast and grad is None:
        scratch = np.empty((min(step, n_rows), n_classes), dtype=flat.dtype)
    workspace = None
    if common["softcap"] is not None and loss.plan.result == np.float32 and n_rows:
        workspace = _SoftcapWorkspace((min(step, n_rows), n_classes))
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        block_targets = _Targets(target[rows], loss.targets.is_index)
        block_out = None if grad is None else grad[rows]
        if fast:
            block_loss = _fast_block(
                loss,
                flat[rows],
                target[rows],
                temperature,
                scale,
                out=block_out if grad is not None else scratch[: rows.stop - start],
                z_loss=common["z_loss"],
                softcap=common["softcap"],
                want_grad=grad is not None,
                workspace=workspace,
            )
            if block_loss is not NotImplemented:
                row_loss[rows] = block_loss
                continue
            fast = False  # the kernel does not take these rows: the general path for all
        block_loss, _ = _block(
            loss,
            flat[rows],
            block_targets,
            keep[rows] if keep_rows else keep,
            temperature if isinstance(temperature, float) else temperature[rows],
            scale,
            out=block_out,
            workspace=workspace,
            **common,
        )
        row_loss[rows] = block_loss
    row_loss = row_loss.reshape(batch_shape)
    if grad is not None:
        grad = grad.reshape(batch_shape + (n_classes,))
    return row_loss, grad


def _fast_path_applies(loss, temperature, n_classes, common):
    """Whether the rows can take :func:`_fast_block`: the common cross-entropy call.

    Class indices, a positive finite scalar temperature, no mask, no label smoothing,
    float32 or float64 logits (or integer ones, which become float64). Everything else
    (and every row the kernel reports as not finite) takes the general path, which
    defines the semantics.
    """
    return (
        common["normalise"]
        and loss.targets.is_index
        and loss.keep is None
        and loss.smoothing == 0.0
        and isinstance(temperature, float)
        and 0.0 < temperature < math.inf
        and n_classes > 0
        and loss.plan.result in (np.float32, np.float64)
        and (loss.values.dtype == loss.plan.result or loss.values.dtype.kind in "biu")
    )


# The largest row gain of the fast path: the float32 kernel writes NaN where its gain
# exceeds about 2**64, and below this bound no entry of the gradient (at most the gain)
# overflows. Gains that large come from temperatures far below 2**-60: the general
# path, which keeps 0 * inf out, computes those blocks.
_LARGEST_FAST_GAIN = 2.0**60


def _fast_gain(gain):
    return bool(np.all(np.abs(gain) <= _LARGEST_FAST_GAIN))


def _fast_block(
    loss, values, target, temperature, scale, *, out, z_loss, softcap, want_grad, workspace
):
    """Row losses of a block of rows, the gradient into ``out``: softmax minus one-hot.

    One kernel run (:func:`softmaxkit._kernels.softmax_stats`) writes the softmax times
    each row's gain into ``out`` and returns each row's maximum ``m`` and log-normaliser
    ``s = log(sum(exp((x - m) / T)))``. The loss ``(m - x_t) / T + s`` is then exact to a
    few units in the last place, a sum of two non-negative terms (no cancellation: a
    confident correct prediction has a tiny positive loss). The gradient
    ``gain * softmax - row_factor * w_t * onehot`` needs one scatter of one entry per
    row (the target's entry is ``gain * expm1(log p_t)``, without cancellation). Rows
    the kernel reports as not finite (NaN, +inf, every entry -inf) are computed again
    by :func:`_block`. Returns NotImplemented without the kernel, and for gains beyond
    ``_LARGEST_FAST_GAIN`` (a temperature near 0).
    """
    work = loss.plan.work
    # loss.xp, not numpy itself: NumPy before 2.0 has no device argument.
    row_weight, safe_target = _index_row_weight(
        loss.xp, target, loss.weight, loss.ignore_index, work, values
    )
    source = values
    if values.dtype != loss.plan.result:
        # Integer logits: the default float first, as in the general path.
        values = values.astype(loss.plan.result)
    row_factor = loss.row_factor(scale, temperature)
    if want_grad and not math.isfinite(row_factor):
        return NotImplemented
    # With z_loss the gain depends on the normaliser: the rows are scaled after the run.
    gain = row_factor * row_weight if want_grad and z_loss == 0.0 else None
    if gain is not None and not _fast_gain(gain):
        return NotImplemented
    capped_derivative = None
    if softcap is not None:
        values, capped_derivative = _softcapped(loss.xp, values, softcap, loss.plan, workspace)
    stats = _kernels.softmax_stats(values, out, temperature=temperature, gain=gain)
    if stats is NotImplemented:
        return NotImplemented
    n_rows = values.shape[0]
    rows = np.arange(n_rows)
    maxima, log_normaliser = stats[:, 0], stats[:, 1]
    active = row_weight > 0
    with np.errstate(over="ignore", invalid="ignore"):
        # Overflow to inf is the honest loss; 0 * inf of inactive rows is replaced below.
        shifted = maxima - values[rows, safe_target].astype(work)
        if temperature != 1.0:
            shifted /= temperature
        row_loss = row_weight * (shifted + log_normaliser)
        if z_loss > 0.0:
            lse = maxima / temperature + log_normaliser
            square = np.square(lse)
            row_loss += z_loss * (row_weight * square)
    row_loss = np.where(active, row_loss, 0.0)
    if want_grad:
        # The target's entry coef_p * p_t - w_t, with p_t - 1 = expm1(log p_t): exact for
        # a confident correct prediction, where p_t * gain - gain would leave the
        # rounding error of the gain.
        log_target = -(shifted + log_normaliser)
        # Ignored rows and rows of weight 0 keep +0 (w * expm1 would be -0).
        target_entry = np.where(active, row_weight * np.expm1(log_target), 0.0)
        if z_loss > 0.0:
            finite_lse = np.where(np.isfinite(lse), lse, 0.0)
            extra = (2.0 * z_loss) * (row_weight * finite_lse)
            # A row factor that underflowed to 0 times an extra that overflowed is 0.
            gain = _times(np, np.float64(row_factor), row_weight + extra)
            if not _fast_gain(gain):
                return NotImplemented
            _scale_rows(out, gain)
            target_entry += _nonzero_times(np, np.exp(log_target), extra)
        out[rows, safe_target] = _times(np, np.float64(row_factor), target_entry)
        if capped_derivative is not None:
            out *= capped_derivative
    edge = np.isnan(log_normaliser)
    if edge.any():
        edge_rows = np.flatnonzero(edge)
        edge_out = None if not want_grad else np.empty_like(out[edge_rows])
        edge_loss, _ = _block(
            loss,
            source[edge_rows],
            _Targets(target[edge_rows], True),
            None,
            temperature,
            scale,
            z_loss=z_loss,
            softcap=softcap,
            want_grad=want_grad,
            out=edge_out,
            normalise=True,
        )
        row_loss[edge_rows] = edge_loss
        if want_grad:
            out[edge_rows] = edge_out
    return row_loss


@_overflow_is_inf
def cross_entropy(
    logits,
    target,
    /,
    *,
    axis=-1,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    reduction="mean",
    temperature=1.0,
    where=None,
    z_loss=0.0,
    softcap=None,
    return_grad=False,
):
    r"""Softmax cross-entropy of ``logits`` against class indices or class probabilities.

    The semantics of ``torch.nn.functional.cross_entropy`` for every combination it
    supports, with the class axis anywhere, and a number where PyTorch gives NaN
    (see Notes).

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, of any supported array library (see
        :func:`~softmaxkit.softmax`).
    target : array_like
        Integer class indices, of the shape of ``logits`` without the class axis;
        or floating class probabilities, of the shape of ``logits``.
    axis : int, default -1
        The class axis (PyTorch's is 1: pass ``axis=1`` for its layouts).
    weight : array_like, optional
        One non-negative weight per class (a 1-D array).
    ignore_index : int, default -100
        Class-index targets equal to it take no part (neither in the loss nor in
        the divisor of the mean). Unused for probability targets.
    label_smoothing : float in [0, 1], default 0.0
        The target becomes ``(1 - label_smoothing) * target + label_smoothing / k``,
        where ``k`` is the number of classes that take part in the row.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by the total weight of the targets that are not
        ignored (the number of rows for probability targets).
    temperature : float or array, default 1.0
        The logits are divided by it, as in :func:`~softmaxkit.softmax`.
    where : array of bool, optional
        Keep-mask broadcastable to ``logits``: False classes take no part.
    z_loss : float, default 0.0
        Adds ``z_loss * logsumexp(logits)**2`` per row (PaLM), times the row's target
        weight for class-index targets.
    softcap : float, optional
        Replaces the logits by ``softcap * tanh(logits / softcap)`` first (Gemma 2);
        ``-inf`` logits stay ``-inf``.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``logits`` (of
        ``loss.sum()`` for ``reduction="none"``), computed with the loss in one pass.

    Returns
    -------
    loss : array
        A 0-d array for "mean" and "sum"; one loss per row for "none". In the
        library and floating dtype of ``logits``.
    dlogits : array
        Only with ``return_grad=True``: the gradient, of the shape of ``logits``.

    Raises
    ------
    ValueError
        For a class index out of range (and not ``ignore_index``), a target of the
        wrong shape, a weight that is negative or not one per class, a
        ``label_smoothing`` outside [0, 1], an unknown ``reduction``, a negative
        ``z_loss`` or a ``softcap`` that is not positive.
    TypeError
        For a target that is neither integer nor floating.

    Notes
    -----
    The per-row loss is ``-log_softmax(logits)[target]``, that is ``lse - x_target``
    with the core's accurate :func:`~softmaxkit.log_softmax`: a confident correct
    prediction gives a tiny positive loss, never 0 or a negative one. The gradient
    with respect to the scaled logits is ``sum(q) * softmax - q`` for the target
    distribution ``q`` (weights and smoothing folded in), plus
    ``2 z_loss lse softmax``, times the derivative of the softcap.

    Where PyTorch gives NaN or inf, softmaxkit gives a number:

    - a batch in which every target is ignored has mean loss 0 and gradient 0
      (PyTorch: NaN, pytorch#70348); so has an empty batch;
    - classes whose logit is ``-inf`` or that ``where`` masks out take no part:
      label smoothing spreads over the remaining classes only, and a probability
      target of 0 there adds 0 (PyTorch: inf or NaN);
    - a class-index target whose logit is ``-inf`` gives ``inf`` loss, with a finite
      gradient.

    ``temperature=0`` (the greedy limit) and ``inf`` (uniform) make the loss constant
    in the logits: the gradient is 0 there. Near 0 the loss and gradient approach that
    limit: both tend to 0 for a target at the row's unique maximum, and grow like
    ``(max - x_target) / T`` and ``1 / T`` otherwise, up to ``inf`` where that leaves
    the dtype's range (never NaN, never a warning).

    For NumPy arrays the rows are processed in blocks, so that no temporary of the
    size of the logits is made besides the gradient itself. With class-index targets,
    a scalar temperature, no ``where`` and no label smoothing, each block takes one
    pass of the compiled kernel over the logits (plus one for ``softcap``, one for
    ``z_loss``).

    See Also
    --------
    nll_loss, softmaxkit.log_softmax, binary_cross_entropy_with_logits

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 0.0]])
    >>> smk.cross_entropy(logits, np.array([0, 1]))
    array(0.16811713)
    >>> loss, dlogits = smk.cross_entropy(logits, np.array([0, -100]), return_grad=True)
    >>> loss
    array(0.2413113)
    >>> dlogits
    array([[-0.21440297,  0.17529039,  0.03911257],
           [ 0.        ,  0.        ,  0.        ]])
    >>> smk.cross_entropy([[0.0, float("-inf")]], [0], label_smoothing=0.5)
    array(0.)
    """
    _check_options(z_loss, softcap)
    loss = _ClassLoss(
        logits,
        target,
        axis,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        temperature=temperature,
        where=where,
        name="logits",
    )
    return _run(
        loss,
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        return_grad=bool(return_grad),
        normalise=True,
    )


def _check_options(z_loss, softcap):
    z_loss = _check_real("z_loss", z_loss, low=0.0)
    if math.isinf(z_loss):
        raise ValueError("z_loss must be finite, got inf")
    if softcap is not None:
        _check_real("softcap", softcap, low=0.0, low_open=True)


@_overflow_is_inf
def nll_loss(
    log_probs,
    target,
    /,
    *,
    axis=-1,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    reduction="mean",
    return_grad=False,
):
    r"""Negative log-likelihood of ``target`` under log-probabilities ``log_probs``.

    ``cross_entropy(x, t)`` is ``nll_loss(log_softmax(x), t)``; the options mean the
    same (``torch.nn.functional.nll_loss`` has ``weight``, ``ignore_index`` and
    ``reduction``).

    Parameters
    ----------
    log_probs : array_like
        Log-probabilities, of any supported array library.
    target : array_like
        Integer class indices (the shape of ``log_probs`` without the class axis) or
        floating class probabilities (the shape of ``log_probs``).
    axis : int, default -1
        The class axis.
    weight, ignore_index, label_smoothing, reduction
        As in :func:`cross_entropy`; classes with log-probability ``-inf`` take no
        part in label smoothing.
    return_grad : bool, default False
        Also return the gradient with respect to ``log_probs`` (of ``loss.sum()`` for
        ``reduction="none"``): minus the target distribution, weighted and scaled.

    Returns
    -------
    loss : array
        A 0-d array for "mean" and "sum", one loss per row for "none".
    dlog_probs : array
        Only with ``return_grad=True``.

    Raises
    ------
    ValueError, TypeError
        As in :func:`cross_entropy`.

    See Also
    --------
    cross_entropy

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> log_probs = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    >>> smk.nll_loss(log_probs, np.array([0, 1]), reduction="none")
    array([0.69314718, 0.22314355])
    """
    loss = _ClassLoss(
        log_probs,
        target,
        axis,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        temperature=1.0,
        where=None,
        name="log_probs",
    )
    return _run(loss, z_loss=0.0, softcap=None, return_grad=bool(return_grad), normalise=False)


# --------------------------------------------------------------------------------------
# the sigmoid family


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
def sigmoid(x, /):
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
def log_sigmoid(x, /):
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
    logits, target, /, *, pos_weight=None, weight=None, reduction="mean"
):
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
    _check_reduction(reduction)
    args = _Elementwise(logits, target, pos_weight, weight)
    xp = args.xp
    t = args.operand(target, "target")
    positive = _softplus(xp, -args.x)
    negative = _softplus(xp, args.x)
    if pos_weight is not None:
        pos = _nonnegative(args, pos_weight, "pos_weight")
        positive_coefficient = pos * t
    else:
        positive_coefficient = t
    result = _times(xp, positive_coefficient, positive) + _times(xp, 1 - t, negative)
    if weight is not None:
        result = _times(xp, _nonnegative(args, weight, "weight"), result)
    return args.finish(result, reduction)


def _nonnegative(args, value, name):
    array = args.operand(value, name)
    xp = args.xp
    if not is_lazy(array):
        bad = ~(array >= 0)
        if _any_known(xp, bad):
            raise ValueError(f"{name} must be >= 0, got {_first_value(xp, array, bad)!r}")
    return array


@_overflow_is_inf
def binary_cross_entropy(probs, target, /, *, weight=None, reduction="mean"):
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
    _check_reduction(reduction)
    args = _Elementwise(probs, target, weight)
    xp = args.xp
    p = args.x
    if not is_lazy(p):
        bad = ~((p >= 0) & (p <= 1))
        if _any_known(xp, bad):
            raise ValueError(f"probs must be in [0, 1], got {_first_value(xp, p, bad)!r}")
    t = args.operand(target, "target")
    floor = xp.full_like(p, -100.0)
    one = xp.ones_like(p)
    # log(0) is avoided, not clamped after the fact: no divide-by-zero warning.
    log_p = xp.where(p > 0, xp.log(xp.where(p > 0, p, one)), floor)
    log_not_p = xp.where(p < 1, xp.log1p(-xp.where(p < 1, p, p * 0)), floor)
    # The clamp of torch.clamp(min=-100): at log(p) = -100 exactly the gradient is that
    # of log(p) (maximum would give it half).
    log_p = xp.where(log_p >= floor, log_p, floor)
    log_not_p = xp.where(log_not_p >= floor, log_not_p, floor)
    result = -(t * log_p + (1 - t) * log_not_p)
    if weight is not None:
        result = _times(xp, _nonnegative(args, weight, "weight"), result)
    return args.finish(result, reduction)


# --------------------------------------------------------------------------------------
# divergences


@_overflow_is_inf
def kl_divergence(p_logits, q_logits, /, axis=-1):
    r"""Kullback-Leibler divergence ``KL(p || q)`` between the softmaxes of two logit arrays.

    Parameters
    ----------
    p_logits, q_logits : array_like
        Logits of the two distributions, of the same shape (or broadcastable), any
        supported array library. ``-inf`` entries have probability 0.
    axis : int, tuple of int or None, default -1
        The axis (axes) of the distribution, as in :func:`~softmaxkit.softmax`.

    Returns
    -------
    array
        ``sum(p * (log p - log q))`` over ``axis``, >= 0; ``inf`` where ``p`` has
        mass on a class where ``q`` has none.

    Notes
    -----
    Exact at ``-inf`` entries: a class where ``p`` is 0 adds nothing (``0 log 0 =
    0``), whatever ``q`` is there. Both log-probabilities come from the core's
    :func:`~softmaxkit.log_softmax`, and ``p`` from :func:`~softmaxkit.softmax`.

    See Also
    --------
    entropy, cross_entropy

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.kl_divergence([0.0, 0.0], [0.0, float("-inf")]))
    inf
    >>> float(smk.kl_divergence([0.0, float("-inf")], [0.0, 0.0]))
    0.6931471805599453
    """
    xp = array_namespace(p_logits, q_logits)
    p_source = as_array(xp, p_logits)
    q_source = as_array(xp, q_logits)
    shape = tuple(np.broadcast_shapes(tuple(p_source.shape), tuple(q_source.shape)))
    if tuple(p_source.shape) != shape:
        p_source = xp.broadcast_to(p_source, shape)
    if tuple(q_source.shape) != shape:
        q_source = xp.broadcast_to(q_source, shape)
    plan = plan_dtypes(xp, p_source)
    log_p = xp.astype(log_softmax(p_source, axis, dtype=plan.work), plan.work)
    log_q = xp.astype(log_softmax(q_source, axis, dtype=plan.work), plan.work)
    p = xp.astype(softmax(p_source, axis, dtype=plan.work), plan.work)
    neg_inf = -math.inf
    support = ~(log_p == neg_inf)
    zero = xp.zeros_like(log_p)
    unreachable = support & (log_q == neg_inf)
    difference = xp.where(support & ~unreachable, log_p, zero) - xp.where(
        support & ~unreachable, log_q, zero
    )
    terms = xp.where(unreachable, zero + math.inf, p * difference)
    axes = normalize_axis(axis, len(shape))
    result = reduce_sum(xp, terms, axes, keepdims=False)
    result = xp.astype(result, plan.result)
    return np.asarray(result) if is_numpy_namespace(xp) else result


@_overflow_is_inf
def entropy(logits, /, axis=-1):
    r"""Shannon entropy (in nats) of the softmax of ``logits``.

    Parameters
    ----------
    logits : array_like
        Logits, any supported array library; ``-inf`` entries have probability 0.
    axis : int, tuple of int or None, default -1
        The axis (axes) of the distribution.

    Returns
    -------
    array
        ``-sum(p log p)`` over ``axis``, with ``0 log 0 = 0``.

    Notes
    -----
    ``log p`` and ``p`` come from the core's :func:`~softmaxkit.log_softmax` and
    :func:`~softmaxkit.softmax`; a row of ``k`` equal finite logits and ``-inf``
    elsewhere has entropy ``log(k)``.

    See Also
    --------
    kl_divergence

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.entropy([0.0, 0.0, float("-inf")]))
    0.6931471805599453
    """
    xp = array_namespace(logits)
    source = as_array(xp, logits)
    plan = plan_dtypes(xp, source)
    log_p = xp.astype(log_softmax(source, axis, dtype=plan.work), plan.work)
    p = xp.astype(softmax(source, axis, dtype=plan.work), plan.work)
    support = ~(log_p == -math.inf)
    terms = xp.where(support, p * xp.where(support, log_p, xp.zeros_like(log_p)), 0 * p)
    axes = normalize_axis(axis, source.ndim)
    result = -reduce_sum(xp, terms, axes, keepdims=False)
    result = xp.astype(result, plan.result)
    return np.asarray(result) if is_numpy_namespace(xp) else result
