"""logsumexp."""

from __future__ import annotations

import math

import numpy as np

from . import _kernels
from ._kernels import fast_reduce
from ._lib._dtypes import _name
from ._lib._namespace import device_of, is_lazy, refuse_masked, run_checked
from ._lib._prepare import prepare
from ._lib._shifted_exp import reduce_max, reduce_sum, shifted_exp
from ._lib._validation import broadcast_operand

__all__ = ["logsumexp"]


def logsumexp(
    x,
    /,
    axis=-1,
    *,
    b=None,
    keepdims=False,
    return_sign=False,
    temperature=1.0,
    where=None,
    dtype=None,
    out=None,
):
    r"""Logarithm of the sum of exponentials, ``log(sum(b * exp(x / T)))``, along ``axis``.

    Parameters
    ----------
    x : array_like
        Scores, of any supported array library (see :func:`softmax`).
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to reduce; ``None`` is all axes. SciPy's
        default is ``None``; here it is the last axis, as for :func:`softmax`.
    b : array_like, optional
        Weights broadcastable to ``x``; they may be negative. Entries with
        ``b == 0`` take no part (even where ``x`` is ``inf``), as in SciPy. An
        array ``b`` takes part in the result dtype: without ``dtype=``, the result
        has the library's promoted dtype of ``x``'s floating dtype and ``b``'s
        (float32 ``x`` with float64 ``b`` gives float64, as in SciPy); a Python
        number does not. Complex, object and string ``b`` are a ``TypeError``.
    keepdims : bool, default False
        Keep the reduced axes with length 1.
    return_sign : bool, default False
        Return ``(log|sum|, sign(sum))``. Without it, a negative sum gives NaN,
        as in SciPy.
    temperature : float or array, default 1.0
        As in :func:`softmax`. ``temperature=0`` gives the limit of
        ``logsumexp(x / T)``: ``+inf`` if ``max(x) > 0``, ``-inf`` if it is
        ``< 0``, and ``log(k)`` for ``k`` maxima equal to 0.
    where : array of bool, optional
        Keep-mask; False entries take no part.
    dtype : dtype, optional
        Dtype of the computation and the result.
    out : ndarray, optional
        NumPy only: an array of the result's shape and dtype to write the result
        (the log-magnitude with ``return_sign``) into; it is returned in place of
        the result. Any other input with ``out=`` is a ``TypeError``.

    Returns
    -------
    array or tuple of arrays
        The reduced log-sum-exp, and its sign when ``return_sign`` is True.

    Notes
    -----
    At the edges: an empty axis, an all ``-inf`` or all masked row gives
    ``-inf``; ``+inf`` gives ``+inf``; NaN gives NaN; a zero sum (weights that
    cancel) gives ``-inf`` with sign 0.

    The result is ``max + log1p(sum - 1)``, with the ``1`` of the maxima removed
    exactly and each shifted exponential corrected for the rounding of
    ``x - max``; the error is within ``2 ulp(result) + 2 u |max|``, the second term
    being the cancellation inherent to the problem.

    With weights, the sum is taken in the ``log1p`` form only where it is within
    a factor 2 of 1, and as ``log|sum|`` elsewhere; rows whose weighted terms are
    near the ends of the range are summed scaled by a power of 2. The error then
    has a further absolute part of about ``n u`` times the condition number
    ``sum(|b| exp(x)) / |sum(b exp(x))|`` of the ``n`` weighted terms: the
    rounding of the terms themselves, which no summation in working precision
    avoids where weights of both signs cancel or the sum is close to 1 (a
    result close to 0). A term whose exponential is below the subnormal range
    counts as 0, whatever its weight, as in SciPy.

    See Also
    --------
    softmax, log_softmax, scipy.special.logsumexp

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.logsumexp([1.0, 3.0, 2.0]))
    3.40760596444438
    >>> float(smk.logsumexp([0.0, -40.0]))
    4.248354255291589e-18
    >>> smk.logsumexp([0.0, 0.0], b=[1.0, -2.0], return_sign=True)
    (array(0.), array(-1.))
    """
    if b is None and not return_sign:
        result = fast_reduce(x, axis, temperature, where, dtype, keepdims, out)
        if result is not NotImplemented:
            return result
        refuse_masked(x, where, temperature)
        result = _kernels.reduce(x, axis, temperature, where, dtype, keepdims, out)
        if result is not NotImplemented:
            return result
    else:
        _kernels.dispatch_counts["generic"] += 1
    weight_array = b is not None and not isinstance(b, (int, float))
    args = prepare(
        x,
        axis,
        temperature=temperature,
        where=where,
        dtype=dtype,
        extra=(b,) if weight_array else (),
        weights=b if weight_array else None,
    )
    if b is None and is_lazy(args.x):
        from . import _dask

        if _dask.handles(args):
            return _dask.logsumexp(args, keepdims=keepdims, return_sign=return_sign)
    xp = args.xp
    work = args.plan.work

    def reduced(x, temperature, keep, weights):
        if weights is not None:
            weights = broadcast_operand(xp, weights, x, "b", dtype=work)
            nonzero = weights != 0
            keep = nonzero if keep is None else keep & nonzero
        if args.is_empty:
            shape = tuple(1 if i in args.axes else n for i, n in enumerate(x.shape))
            device = device_of(xp, x)
            result = xp.full(shape, -math.inf, dtype=work, device=device)
            sign = xp.zeros(shape, dtype=work, device=device)
        else:
            state = shifted_exp(xp, x, args.axes, temperature=temperature, keep=keep)
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
        if not keepdims and args.axes:
            result = xp.squeeze(result, axis=args.axes)
            sign = xp.squeeze(sign, axis=args.axes)
        return args.finish(result), args.finish(sign)

    if b is None:
        weights = None
    else:
        weights = args.weights if weight_array else float(b)
    result, sign = run_checked(xp, reduced, args.x, args.temperature, args.keep, weights)
    if return_sign:
        return _kernels.deliver(result, out), sign
    return _kernels.deliver(result, out)


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
