"""The shifted exponentials that softmax, log_softmax and logsumexp share.

Written once against the array namespace ``xp``; every backend runs this code.

For each row (the entries along the normalized axes) with maximum ``m`` and
temperature ``T``, the exact shifted score of an entry is ``s = (x - m) / T <= 0``.
It is held as an unevaluated sum ``d + c``: ``d`` is the rounded value and ``c`` the
rounding error, recovered exactly with TwoSum (Knuth) for the subtraction and with
Dekker's product for the division. Without ``c``, the relative error of
``exp(d)`` would be ``|s| * u`` (up to ~370 ulp in float64 for ``s = -745``);
with it, ``exp(s) = exp(d) * (1 + c)`` to within the error of ``exp`` itself.

The entries equal to the row maximum are counted exactly (``count_top``); the sum of
all the others (``rest``) is accumulated separately, so that ``log(sum) =
log1p((count_top - 1) + rest)`` keeps full relative accuracy when the sum is close
to 1 (Blanchard, Higham & Higham, "Accurately computing the log-sum-exp and softmax
functions", IMA J. Numer. Anal. 41(4), 2021).

Edge rows are replaced by their limits before any arithmetic, so that no
operation produces ``inf - inf``, ``0 / 0`` or an overflow: no floating-point
warning is raised, and no gradient is NaN.

- a row containing ``+inf``: the mass is split equally among its ``+inf`` entries;
- a row that is all ``-inf`` or all masked (``empty``): every entry is excluded;
- a row containing NaN: the maximum is NaN and NaN propagates to the whole row.
"""

from __future__ import annotations

import math

import numpy as np

from ._dtypes import _name
from ._namespace import device_of, is_lazy

__all__ = ["ShiftedExp", "shifted_exp", "reduce_max", "reduce_sum"]


def reduce_max(xp, a, axes):
    """Max over ``axes`` with keepdims; the identity for ``axes == ()``."""
    if not axes:
        return a
    return xp.max(a, axis=axes, keepdims=True)


def reduce_sum(xp, a, axes, keepdims=True):
    """Sum over ``axes``; the identity for ``axes == ()``.

    NumPy sums pairwise only along a contiguous innermost axis; over other axes it adds
    one entry at a time, with an error growing with the length (10 ulp of a float64
    softmax over axis 0 of 200 rows). NumPy arrays summed over other axes are therefore
    summed from a contiguous copy with the summed axes last.
    """
    if not axes:
        return a
    ndim = getattr(a, "ndim", 0)
    trailing = tuple(range(ndim - len(axes), ndim))
    if isinstance(a, np.ndarray) and ndim > 1 and tuple(sorted(axes)) != trailing:
        kept = [d for d in range(ndim) if d not in axes]
        moved = np.ascontiguousarray(np.transpose(a, kept + sorted(axes)))
        total = moved.reshape(moved.shape[: len(kept)] + (-1,)).sum(axis=-1)
        if keepdims:
            total = total.reshape(tuple(1 if d in axes else n for d, n in enumerate(a.shape)))
        return total
    return xp.sum(a, axis=axes, keepdims=keepdims)


class ShiftedExp:
    """The per-entry and per-row quantities of one normalization.

    Per entry (shape of ``x``): ``shifted`` (``d``), ``correction`` (``c``),
    ``exp_shifted`` (``exp(d) * (1 + c)``, 0 where excluded), ``is_top``.
    Per row (keepdims shape): ``shift`` (the maximum of ``x / T``, with its limits),
    ``count_top``, ``empty``, ``pos_inf``, ``zero``, ``one``.
    """

    __slots__ = (
        "xp",
        "axes",
        "shifted",
        "correction",
        "exp_shifted",
        "is_top",
        "shift",
        "count_top",
        "empty",
        "pos_inf",
        "zero",
        "one",
    )

    def __init__(self, **fields):
        for key, value in fields.items():
            setattr(self, key, value)

    def rest_sum(self, weights=None):
        """Sum of ``exp_shifted`` (times ``weights``) over the entries below the maximum."""
        xp = self.xp
        terms = self.exp_shifted if weights is None else weights * self.exp_shifted
        return reduce_sum(xp, xp.where(self.is_top, self.zero, terms), self.axes)

    def top_sum(self, weights=None):
        """``count_top``, or the sum of ``weights`` over the entries at the maximum."""
        if weights is None:
            return self.count_top
        xp = self.xp
        return reduce_sum(xp, xp.where(self.is_top, weights, self.zero), self.axes)


def _split_constant(dtype) -> tuple[float, float]:
    """Veltkamp's splitting factor 2**ceil(p/2) + 1, and the largest safe operand."""
    info = np.finfo(np.dtype(_name(dtype)))
    precision = info.nmant + 1
    half = (precision + 1) // 2
    limit = math.ldexp(1.0, info.maxexp - half - 2)
    return float(2**half + 1), limit


def _split(xp, a, factor):
    scaled = factor * a
    high = scaled - (scaled - a)
    return high, a - high


def _two_product_error(xp, a, b, product, factor):
    """The exact error ``a * b - product`` of a rounded product (Dekker, 1971)."""
    a_high, a_low = _split(xp, a, factor)
    b_high, b_low = _split(xp, b, factor)
    return ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low


def _scalar(xp, value, dtype, like):
    return xp.asarray(value, dtype=dtype, device=device_of(xp, like))


def shifted_exp(xp, x, axes, *, temperature=1.0, keep=None, row_max=None) -> ShiftedExp:
    """Compute the shared quantities for ``x`` (already in the working dtype).

    Parameters
    ----------
    x : array
        Scores in the working dtype.
    axes : tuple of int
        The normalized axes (sorted, non-negative; may be empty).
    temperature : float or array
        A validated temperature: a Python float >= 0, or an array of ``x``'s
        namespace broadcastable to ``x`` with length 1 along ``axes``.
    keep : array of bool, optional
        Entries that take part; the others are treated as deleted.
    row_max : array, optional
        The maximum of the whole row (keepdims shape) when ``x`` is one chunk of
        it (streaming); by default the maximum of ``x`` over ``axes``.
    """
    dtype = x.dtype
    zero = _scalar(xp, 0.0, dtype, x)
    one = _scalar(xp, 1.0, dtype, x)
    neg_inf = _scalar(xp, -math.inf, dtype, x)
    pos_inf = _scalar(xp, math.inf, dtype, x)
    largest = float(np.finfo(np.dtype(_name(dtype))).max)

    if keep is not None:
        x = xp.where(keep, x, neg_inf)

    if row_max is None:
        row_max = reduce_max(xp, x, axes)
    pos_inf_row = row_max == pos_inf
    # A row holding +inf: its limit puts equal mass on the +inf entries.
    x = xp.where(pos_inf_row, xp.where(x == pos_inf, zero, neg_inf), x)
    row_max = xp.where(pos_inf_row, zero, row_max)
    empty = row_max == neg_inf
    # NaN is kept in row_max, so that it propagates to the whole row.
    row_max = xp.where(empty, zero, row_max)

    finite = xp.isfinite(x)
    is_top = (x == row_max) & finite
    x_finite = xp.where(finite, x, zero)
    if isinstance(temperature, float):
        # The temperature takes the working precision first (1e-300 is 0 in float32).
        with np.errstate(over="ignore", under="ignore"):
            temperature = float(np.asarray(temperature, dtype=np.dtype(_name(dtype))))
    # x - row_max overflows exactly when half of it, which cannot overflow, rounds
    # below -largest / 2 (halving is exact for the large operands that matter, and
    # rounding commutes with it). Those entries keep the halved difference: divided by a
    # temperature above 1 it may be finite again, and is doubled after the division;
    # otherwise their limit is -inf (exp 0, log below the range).
    half = _scalar(xp, 0.5, dtype, x)
    too_low = (x_finite * half - row_max * half) < _scalar(xp, -largest / 2, dtype, x)
    recoverable = not isinstance(temperature, float) or 1.0 < temperature < math.inf
    halved = None
    if recoverable and (is_lazy(too_low) or bool(xp.any(too_low))):
        halved = too_low
        x_finite = xp.where(halved, x_finite * half, x_finite)
        subtracted = xp.where(halved, row_max * half, row_max)
        excluded = ~finite
    else:
        x_finite = xp.where(too_low, row_max, x_finite)
        subtracted = row_max
        excluded = (~finite) | too_low
    # TwoSum: difference + error == x - row_max exactly (Knuth, TAOCP vol. 2, 4.2.2).
    difference = x_finite - subtracted
    virtual = difference - x_finite
    error = (x_finite - (difference - virtual)) + (-subtracted - virtual)
    shifted = xp.where(excluded, xp.where(xp.isnan(x), x, neg_inf), difference)
    correction = xp.where(excluded, zero, error)
    shift = row_max

    if isinstance(temperature, float):
        if temperature == 0.0:
            shifted, shift = _greedy_limit(xp, shifted, row_max, is_top)
            correction = xp.zeros_like(correction)
        elif temperature == math.inf:
            shifted, shift = _uniform_limit(xp, shifted, row_max, finite)
            correction = xp.zeros_like(correction)
        elif temperature != 1.0:
            shifted, correction = _divide(xp, shifted, correction, temperature, dtype, x)
            shifted, correction = _doubled(xp, shifted, correction, halved, dtype, x)
            shift = quiet_divide(xp, row_max, temperature, dtype, x)
    else:
        t_zero = temperature == zero
        t_inf = temperature == pos_inf
        t_safe = xp.where(t_zero | t_inf, one, temperature)
        divided, divided_correction = _divide(xp, shifted, correction, t_safe, dtype, x)
        divided, divided_correction = _doubled(
            xp, divided, divided_correction, halved, dtype, x
        )
        divided_shift = quiet_divide(xp, row_max, t_safe, dtype, x)
        greedy, greedy_shift = _greedy_limit(xp, shifted, row_max, is_top)
        uniform, uniform_shift = _uniform_limit(xp, shifted, row_max, finite)
        shifted = xp.where(t_zero, greedy, xp.where(t_inf, uniform, divided))
        shift = xp.where(t_zero, greedy_shift, xp.where(t_inf, uniform_shift, divided_shift))
        correction = xp.where(t_zero | t_inf, zero, divided_correction)

    exp_shifted = xp.exp(shifted)
    exp_shifted = exp_shifted + exp_shifted * correction
    count_top = reduce_sum(xp, xp.astype(is_top, dtype), axes)
    return ShiftedExp(
        xp=xp,
        axes=axes,
        shifted=shifted,
        correction=correction,
        exp_shifted=exp_shifted,
        is_top=is_top,
        shift=shift,
        count_top=count_top,
        empty=empty,
        pos_inf=pos_inf_row,
        zero=zero,
        one=one,
    )


def _doubled(xp, quotient, correction, halved, dtype, like):
    """The quotients (and corrections) of the ``halved`` entries doubled, those that
    overflow set to -inf (their quotient is below -largest / 2: the differences are
    negative)."""
    if halved is None:
        return quotient, correction
    largest = float(np.finfo(np.dtype(_name(dtype))).max)
    zero = _scalar(xp, 0.0, dtype, like)
    overflows = halved & (quotient < _scalar(xp, -largest / 2, dtype, like))
    two = xp.where(halved, _scalar(xp, 2.0, dtype, like), _scalar(xp, 1.0, dtype, like))
    doubled = xp.where(overflows, zero, quotient) * two
    quotient = xp.where(overflows, _scalar(xp, -math.inf, dtype, like), doubled)
    return quotient, xp.where(overflows, zero, correction * two)


def _greedy_limit(xp, shifted, row_max, is_top):
    """Temperature -> 0: only the maxima remain, in equal shares; the shift is the
    limit of ``max / T``: +inf, -inf, or 0 for a maximum of 0. NaN rows stay NaN."""
    zero = _scalar(xp, 0.0, shifted.dtype, shifted)
    neg_inf = _scalar(xp, -math.inf, shifted.dtype, shifted)
    pos_inf = _scalar(xp, math.inf, shifted.dtype, shifted)
    greedy = xp.where(is_top, zero, xp.where(xp.isnan(shifted), shifted, neg_inf))
    shift = xp.where(row_max > zero, pos_inf, xp.where(row_max < zero, neg_inf, row_max))
    return greedy, shift


def _uniform_limit(xp, shifted, row_max, finite):
    """Temperature -> inf: every finite entry scores 0; the shift is 0. NaN rows stay NaN."""
    zero = _scalar(xp, 0.0, shifted.dtype, shifted)
    return xp.where(finite, zero, shifted), xp.where(xp.isnan(row_max), row_max, zero)


def quiet_divide(xp, numerator, temperature, dtype, like):
    """``numerator / temperature`` (temperature finite, > 0), rounded as the division
    itself, with the quotients that overflow set to +-inf directly, so that the
    division raises no overflow.

    The quotient overflows exactly when ``(numerator / 4) / temperature`` rounds above
    ``largest / 4`` (a quarter of the numerator is exact wherever the question
    arises, and rounding commutes with the scaling); numerators more than twice
    ``temperature * largest`` overflow for certain and are set aside first, so
    that no division overflows.
    """
    largest = float(np.finfo(np.dtype(_name(dtype))).max)
    zero = _scalar(xp, 0.0, dtype, like)
    if isinstance(temperature, float):
        if temperature >= 1.0:
            return numerator / temperature
        capped = temperature
        bound = _scalar(xp, temperature * largest, dtype, like)
    else:
        one = _scalar(xp, 1.0, dtype, like)
        capped = xp.where(temperature < one, temperature, one)
        bound = capped * largest
    magnitude = xp.abs(numerator)
    certain = magnitude * 0.5 > bound
    candidate = xp.where(certain, zero, numerator)
    overflows = certain | (xp.abs((candidate * 0.25) / capped) > largest / 4)
    quotient = xp.where(overflows, zero, numerator) / temperature
    infinite = xp.where(
        numerator < zero, _scalar(xp, -math.inf, dtype, like), _scalar(xp, math.inf, dtype, like)
    )
    return xp.where(overflows, infinite, quotient)


def _scaling_bands(dtype):
    """The scalings of an extreme temperature before the division (see :func:`_divide`).

    Returns ``(low, high)``: a temperature below ``2**-low`` is multiplied by
    ``2**low`` (as often as needed), one of at least ``2**high`` by ``2**-high``.
    """
    info = np.finfo(np.dtype(_name(dtype)))
    precision = info.nmant + 1
    # Scaled into [2**(minexp + 3p), 1], the products of Dekker's split stay normal
    # for every quotient above 2**-p (smaller ones round away next to 1 or log(k)).
    low = -(int(info.minexp) + 3 * precision)
    return low, int(info.maxexp) // 2


def _scale_operands(xp, shifted, correction, temperature, dtype, like):
    """``(shifted, correction, temperature)`` multiplied by one power of 2 per row, with
    the scaled temperature within the range where the division is exact (see
    :func:`_divide`), and the entries whose quotient overflows for certain (they
    would overflow in the scaling) set to 0; returns them with a mask of those
    entries (None if there are none)."""
    largest = float(np.finfo(np.dtype(_name(dtype))).max)
    low, high = _scaling_bands(dtype)
    zero = _scalar(xp, 0.0, dtype, like)
    up, down = math.ldexp(1.0, low), math.ldexp(1.0, -high)
    # Scaled up, |shifted| stays within largest exactly when |shifted| <= this.
    ceiling = math.ldexp(largest, -low)
    overflow = None
    scalar = isinstance(temperature, float)
    one = _scalar(xp, 1.0, dtype, like)
    for _ in range(4):  # float64 needs one step at most, float32 two
        if scalar:
            if not temperature < 1.0 / up:
                break
            beyond = xp.abs(shifted) > ceiling
            factor = up
        else:
            lifted = temperature < 1.0 / up
            if not is_lazy(lifted) and not bool(xp.any(lifted)):
                break
            beyond = lifted & (xp.abs(shifted) > ceiling)
            factor = xp.where(lifted, _scalar(xp, up, dtype, like), one)
        overflow = beyond if overflow is None else overflow | beyond
        shifted = xp.where(beyond, zero, shifted) * factor
        correction = xp.where(beyond, zero, correction) * factor
        temperature = temperature * factor
    if scalar:
        factor = down if temperature >= 1.0 / down else None
    else:
        lowered = temperature >= 1.0 / down
        factor = None
        if is_lazy(lowered) or bool(xp.any(lowered)):
            factor = xp.where(lowered, _scalar(xp, down, dtype, like), one)
    if factor is not None:
        shifted, correction = shifted * factor, correction * factor
        temperature = temperature * factor
    return shifted, correction, temperature, overflow


def _divide(xp, shifted, correction, temperature, dtype, like):
    """``(shifted + correction) / temperature`` as a new rounded value and its error.

    ``temperature`` is finite and > 0 (a float or an array). The remainder of the
    rounded quotient is recovered exactly with Dekker's product. For that, the
    operands are first scaled by a power of 2 (which changes no quotient) so that
    the temperature lies in ``[2**(minexp + 3p), 2**(maxexp/2))``: a subnormal or a
    tiny temperature would leave the products of the split below the normal range
    (97 ulp for ``temperature=1e-310``), a huge one too large to split (214 ulp
    for ``1e300``). Quotients too large to split get no correction (their
    exponential is 0 and their logarithm is dominated by the rounded value).
    """
    factor, limit = _split_constant(dtype)
    zero = _scalar(xp, 0.0, dtype, like)
    shifted, correction, temperature, overflow = _scale_operands(
        xp, shifted, correction, temperature, dtype, like
    )
    quotient = quiet_divide(xp, shifted, temperature, dtype, like)
    if overflow is not None:
        quotient = xp.where(overflow, _scalar(xp, -math.inf, dtype, like), quotient)
    safe = xp.isfinite(quotient) & (xp.abs(quotient) < limit)
    t_split = temperature
    if isinstance(temperature, float):
        t_split = _scalar(xp, temperature, dtype, like)
    q_safe = xp.where(safe, quotient, zero)
    s_safe = xp.where(safe, shifted, zero)
    product_error = _two_product_error(xp, q_safe, t_split, q_safe * t_split, factor)
    remainder = (s_safe - q_safe * t_split) - product_error
    new_correction = (remainder + xp.where(safe, correction, zero)) / temperature
    return quotient, new_correction
