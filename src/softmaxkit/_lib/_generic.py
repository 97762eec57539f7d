"""The generic implementations of softmax, log_softmax and logsumexp.

Written once against the array API namespace ``xp`` of the input, they take every
call the fast paths decline, on every library (NumPy forced generic, array_api_strict,
PyTorch, JAX, CuPy, TensorFlow through its adapter, Dask element by element) and are
the reference the fast paths are tested against. The numerics live in
``_shifted_exp.py``: the shift ``x - max`` with its rounding error (TwoSum), the
division by the temperature with its remainder, and the sum held minus one for the
``log1p`` form.
"""

from __future__ import annotations

import math

import numpy as np

from ._dtypes import _name
from ._namespace import device_of, is_lazy, run_checked
from ._shifted_exp import reduce_max, reduce_sum, shifted_exp
from ._validation import broadcast_operand

__all__ = ["normalize", "logsumexp"]


def normalize(call, *, log):
    """softmax (``log`` False) or log_softmax of a validated call, written once against
    ``xp``: the reference every fast path is tested against."""
    xp = call.xp
    if call.is_empty:
        return call.finish(call.x)

    def normalized(x, temperature, keep):
        state = shifted_exp(xp, x, call.axes, temperature=temperature, keep=keep)
        if log:
            sum_minus_one = (state.top_sum() - state.one) + state.rest_sum()
            log_total = xp.log1p(xp.where(state.empty, state.zero, sum_minus_one))
            result = (state.shifted - log_total) + state.correction
        else:
            total = state.top_sum() + state.rest_sum()
            result = state.exp_shifted / xp.where(state.empty, state.one, total)
        return call.finish(result)

    return run_checked(xp, normalized, call.x, call.temperature, call.keep)


def logsumexp(call, *, b, keepdims, return_sign):
    """logsumexp of a validated call; ``b`` is None, a Python number, or (as
    ``call.weights``) an array. Returns ``(result, sign)``."""
    xp = call.xp
    work = call.plan.work

    def reduced(x, temperature, keep, weights):
        if weights is not None:
            weights = broadcast_operand(xp, weights, x, "b", dtype=work)
            nonzero = weights != 0
            keep = nonzero if keep is None else keep & nonzero
        if call.is_empty:
            shape = tuple(1 if i in call.axes else n for i, n in enumerate(x.shape))
            device = device_of(xp, x)
            result = xp.full(shape, -math.inf, dtype=work, device=device)
            sign = xp.zeros(shape, dtype=work, device=device)
        else:
            state = shifted_exp(xp, x, call.axes, temperature=temperature, keep=keep)
            if weights is None:
                sign = xp.where(state.empty, state.zero, state.one)
                magnitude_minus_one = (state.count_top - state.one) + state.rest_sum()
                vanishing = state.empty
                log_total = xp.log1p(xp.where(vanishing, state.zero, magnitude_minus_one))
            else:
                sign, log_total, vanishing = _weighted_log_total(xp, state, weights, keep)
            result = state.shift + log_total
            inf = xp.asarray(math.inf, dtype=work, device=device_of(xp, result))
            result = xp.where(state.pos_inf & ~xp.isnan(result), inf, result)
            result = xp.where(vanishing, -inf, result)
            if not return_sign:
                nan = xp.asarray(math.nan, dtype=work, device=device_of(xp, result))
                result = xp.where(sign < state.zero, nan, result)
        if not keepdims and call.axes:
            result = xp.squeeze(result, axis=call.axes)
            sign = xp.squeeze(sign, axis=call.axes)
        return call.finish(result), call.finish(sign)

    if b is None:
        weights = None
    else:
        weights = call.weights if call.weights is not None else float(b)
    return run_checked(xp, reduced, call.x, call.temperature, call.keep, weights)


# ln 2 in two parts (fdlibm): the high part has 32 trailing zero bits, so that its
# product with an integer below 2**20 is exact.
_LN2_HIGH = 6.93147180369123816490e-01
_LN2_LOW = 1.90821492927058770002e-10


def _term_scaling(dtype):
    """(small, large, scaling, largest liftable weight, log(2**scaling) as high + low).

    A row whose largest weighted term ``|b| exp(x - max)`` is below ``2**-small``
    is summed with its terms scaled by ``2**scaling``, computed from weights and
    exponentials scaled by ``2**(scaling / 2)`` each: its terms would otherwise
    round in the subnormal range, with few significant bits (a weight of 1e-320
    alone would keep 3 digits). One whose largest term is above ``2**large`` is
    summed scaled by ``2**-scaling``, so that the sum cannot overflow. In a lifted
    row, a weight above the largest liftable one has an exponential of 0 (its
    term would be the largest otherwise).
    """
    info = np.finfo(np.dtype(_name(dtype)))
    precision = int(info.nmant) + 1
    small = -(int(info.minexp) + 2 * precision)
    large = int(info.maxexp) - 64
    scaling = 2 * ((int(info.maxexp) * 5) // 16)
    liftable = math.ldexp(1.0, int(info.maxexp) - 1 - scaling // 2)
    exact_high = scaling * _LN2_HIGH
    high = float(np.asarray(exact_high + scaling * _LN2_LOW, dtype=np.dtype(_name(dtype))))
    low = (exact_high - high) + scaling * _LN2_LOW
    return small, large, scaling, liftable, high, low


def _weighted_log_total(xp, state, weights, keep):
    """(sign, log|sum|, vanishing) of the weighted sum of the shifted exponentials.

    ``log|sum|`` is ``log1p(|sum| - 1)``, with the 1 taken off the weights of the
    maxima before the rest is added, where ``|sum|`` is within a factor 2 of 1 (the
    form keeps relative accuracy there), and ``log(|sum|)`` elsewhere: far from 1,
    ``|sum| - 1`` would cancel the digits of a small sum (a weight of 1e-10 would
    lose 7 of them, one of 1e-20 all).
    """
    dtype = state.one.dtype
    small, large, scaling, liftable, log_high, log_low = _term_scaling(dtype)

    def constant(value):
        return xp.asarray(value, dtype=dtype, device=device_of(xp, state.one))

    # Entries that take no part are deleted, whatever their weight (even inf or NaN).
    weights = xp.where(keep, weights, state.zero)
    # Infinite weights of both signs make the sum NaN, as in SciPy; without a warning.
    with np.errstate(invalid="ignore"):
        terms = weights * state.exp_shifted
        largest_term = reduce_max(xp, xp.abs(terms), state.axes)
        lifted = largest_term < constant(math.ldexp(1.0, -small))
        lowered = largest_term > constant(math.ldexp(1.0, large))
        if is_lazy(lifted) or bool(xp.any(lifted)):
            half = math.ldexp(1.0, scaling // 2)
            bounded = xp.where(xp.abs(weights) <= constant(liftable), weights, state.zero)
            terms = xp.where(lifted, (bounded * half) * (state.exp_shifted * half), terms)
        terms = xp.where(lowered, terms * math.ldexp(1.0, -scaling), terms)
        top = reduce_sum(xp, xp.where(state.is_top, terms, state.zero), state.axes)
        rest = reduce_sum(xp, xp.where(state.is_top, state.zero, terms), state.axes)
        total = top + rest
        sign = xp.sign(total)
        absolute = sign * total
        absolute_minus_one = (sign * top - state.one) + sign * rest
    vanishing = state.empty | (total == state.zero)
    near_one = (absolute >= constant(0.5)) & (absolute <= constant(2.0))
    near = xp.log1p(xp.where(near_one & ~vanishing, absolute_minus_one, state.zero))
    far = xp.log(xp.where(near_one | vanishing, state.one, absolute))
    log_total = xp.where(near_one, near, far)

    # Undo the scaling: log|sum| - log(2**scaling), with the logarithm in two parts.
    def unscaling(value):
        return xp.where(lifted, constant(-value), xp.where(lowered, constant(value), state.zero))

    return sign, (log_total + unscaling(log_high)) + unscaling(log_low), vanishing
