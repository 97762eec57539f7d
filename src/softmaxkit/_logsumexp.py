"""logsumexp."""

from __future__ import annotations

import math

from . import _kernels
from ._kernels import fast_reduce
from ._lib._namespace import is_lazy
from ._lib._prepare import prepare
from ._lib._shifted_exp import shifted_exp
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
        ``b == 0`` take no part (even where ``x`` is ``inf``), as in SciPy.
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
        result = _kernels.reduce(x, axis, temperature, where, dtype, keepdims, out)
        if result is not NotImplemented:
            return result
    else:
        _kernels.dispatch_counts["generic"] += 1
    extra = () if b is None or isinstance(b, (int, float)) else (b,)
    args = prepare(x, axis, temperature=temperature, where=where, dtype=dtype, extra=extra)
    if b is None and is_lazy(args.x):
        from . import _dask

        if _dask.handles(args):
            return _dask.logsumexp(args, keepdims=keepdims, return_sign=return_sign)
    xp = args.xp
    weights = None
    keep = args.keep
    if b is not None:
        weights = broadcast_operand(xp, b, args.x, "b", dtype=args.plan.work)
        nonzero = weights != 0
        keep = nonzero if keep is None else keep & nonzero

    if args.is_empty:
        shape = tuple(1 if i in args.axes else n for i, n in enumerate(args.x.shape))
        result = xp.full(shape, -math.inf, dtype=args.plan.work)
        sign = xp.zeros(shape, dtype=args.plan.work)
    else:
        state = shifted_exp(xp, args.x, args.axes, temperature=args.temperature, keep=keep)
        top = state.top_sum(weights)
        rest = state.rest_sum(weights)
        if weights is None:
            sign = xp.where(state.empty, state.zero, state.one)
            magnitude_minus_one = (top - state.one) + rest
            vanishing = state.empty
        else:
            total = top + rest
            sign = xp.sign(total)
            # |total| - 1, without cancelling the leading 1 of the maxima.
            magnitude_minus_one = (sign * top - state.one) + sign * rest
            vanishing = state.empty | (total == state.zero)
        log_total = xp.log1p(xp.where(vanishing, state.zero, magnitude_minus_one))
        result = state.shift + log_total
        inf = xp.asarray(math.inf, dtype=args.plan.work)
        result = xp.where(state.pos_inf & ~xp.isnan(result), inf, result)
        result = xp.where(vanishing, -inf, result)
        if not return_sign:
            result = xp.where(sign < state.zero, xp.asarray(math.nan, dtype=args.plan.work), result)
    if not keepdims and args.axes:
        result = xp.squeeze(result, axis=args.axes)
        sign = xp.squeeze(sign, axis=args.axes)
    if return_sign:
        return _kernels.deliver(args.finish(result), out), args.finish(sign)
    return _kernels.deliver(args.finish(result), out)
