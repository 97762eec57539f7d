"""The class-loss engine: the validated call (:class:`_ClassLoss`, class axis last) and
the general computation of a block of rows (:func:`_block`), which defines the semantics."""

from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from .._lib._dtypes import _kind, plan_dtypes
from .._lib._namespace import (
    array_namespace,
    as_array,
    is_numpy_namespace,
)
from .._lib._validation import (
    broadcast_mask,
    check_fraction,
    check_int,
    check_reduction,
    check_temperature,
    class_axis,
)
from .._logsumexp import logsumexp
from .._softmax import log_softmax
from ._checks import _any_known, _check_target, _check_weight, _Targets
from ._rows import _device, _gradient, _index_row_weight, _row_terms
from ._softcap import _softcapped


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
        check_reduction(reduction)
        self.smoothing = check_fraction("label_smoothing", label_smoothing, allow_zero=True)
        check_int("ignore_index", ignore_index)
        temperature_array = None if isinstance(temperature, numbers.Real) else temperature
        weight_array = None if weight is None or isinstance(weight, (list, tuple)) else weight
        target_array = None if isinstance(target, (list, tuple, numbers.Number)) else target
        xp = array_namespace(values, target_array, weight_array, where, temperature_array)
        source = as_array(xp, values)
        plan = plan_dtypes(xp, source)
        axis = class_axis(axis, source.ndim, name)
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

    def as_numpy(self, values, to_numpy):
        """This call with NumPy logits ``values`` (class axis last, float32 or float64)
        and its other arrays converted by ``to_numpy`` (views, for a library whose
        memory NumPy can read): the same validated call, for the NumPy road."""
        numpy = array_namespace(values)
        twin = copy.copy(self)
        twin.xp = numpy
        twin.values = values
        twin.plan = plan_dtypes(numpy, values)
        twin.targets = _Targets(to_numpy(self.targets.array), self.targets.is_index)
        twin.weight = to_numpy(self.weight)
        twin.keep = to_numpy(self.keep)
        twin.temperature = to_numpy(self.temperature)
        twin.log_probs_dtype = None
        return twin

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
    normalize,
    workspace=None,
):
    """Row losses (and the gradient, into ``out`` for NumPy) of a block of rows."""
    xp = loss.xp
    work = loss.plan.work
    capped_derivative = None
    if softcap is not None:
        values, capped_derivative = _softcapped(xp, values, softcap, loss.plan, workspace)
    if normalize:
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
        normalized=normalize,
        derivative=capped_derivative,
    )
    return terms.loss, grad


# The compiled float32 kernel gives NaN for rows of fewer than 8 entries at a temperature
# of 2**900 or more; those blocks are normalized in float64.
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
