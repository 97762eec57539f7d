"""The mergeable log-sum-exp state: ``(row max, sum - 1)`` per row.

Written once against the array namespace ``xp``; the streaming state, the Dask
reduction and the file streamer all run this code.

A row (or the part of it seen so far) is summarised by two numbers: its raw
maximum ``m`` (in the units of ``x``, before the temperature) and
``s = sum(exp((x - m) / T)) - 1``. Holding the sum *minus one* keeps the
``log1p`` form of the core (Blanchard, Higham & Higham 2021): the ``1`` of the
maximum is never added, so ``logsumexp([0, -40])`` stays ``4.248e-18`` however
the row is chunked. Holding the raw maximum (not ``m / T``) lets the final
normalization compute ``x - m`` exactly with TwoSum, as the core does; dividing
first would round ``m / T`` and cost ``|m / T| * u`` in every probability.

Two states merge by treating their maxima as a row of scores weighted by
``s + 1``: the shared :func:`shifted_exp` gives the compensated factors
``exp((m_i - m) / T)``, the edge limits (``+inf``, empty, NaN) and the
temperature limits ``T = 0`` and ``T = inf``. The states of an empty chunk and
of an all ``-inf`` chunk are ``(-inf, -1)``, the identity of the merge.

``widened=True`` says that ``x`` was promoted to a wider working dtype than its
own (float32 computed in float64, halves in float32). Then ``x - m`` and its
division by a finite temperature round far below the result's ulp, and a block
whose rows all have a finite maximum takes a plain path (subtract, ``exp``,
sum) that is several times faster than the compensated one; blocks with
``+inf``, NaN, empty rows, masks or the limits ``T = 0``/``T = inf`` always take
the compensated path, and so do lazy arrays (Dask, JAX under ``jit``), whose
maximum cannot be checked without computing it.
"""

from __future__ import annotations

import math

from ._namespace import is_lazy, is_numpy_namespace
from ._shifted_exp import quiet_divide, reduce_max, reduce_sum, shifted_exp

__all__ = ["chunk_state", "merge_states", "state_logsumexp", "normalize_chunk"]


def _constant(xp, value, like):
    return xp.asarray(value, dtype=like.dtype, device=getattr(like, "device", None))


def _full_state(xp, x, axes):
    shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    maximum = xp.full(shape, -math.inf, dtype=x.dtype)
    return maximum, xp.full(shape, -1.0, dtype=x.dtype)


def _plain(maximum, temperature, keep, widened, xp):
    """Whether the uncompensated path is exact enough (see the module docstring)."""
    if not widened or keep is not None:
        return False
    if not isinstance(temperature, float) or not 0.0 < temperature < math.inf:
        return False
    if is_lazy(maximum):
        # Its values are unknown (Dask, JAX under jit): the compensated path, which
        # needs no check of them, keeps the computation lazy.
        return False
    return bool(xp.all(xp.isfinite(maximum)))


def _plain_shifted(xp, x, maximum, temperature):
    shifted = x - maximum
    return shifted if temperature == 1.0 else shifted / temperature


def _numpy_plain_sum(x, maximum, temperature, axes):
    """The plain ``sum - 1`` with NumPy, in place: large fresh temporaries cost page faults.

    ``x - m`` and its division by a small temperature may overflow to ``-inf``: the
    limit of those entries (their exponential is 0), without the warning.
    """
    import numpy as np

    with np.errstate(over="ignore"):
        terms = np.subtract(x, maximum)
        if temperature != 1.0:
            np.divide(terms, temperature, out=terms)
    np.exp(terms, out=terms)
    is_top = x == maximum
    count_top = np.sum(is_top, axis=axes, keepdims=True, dtype=x.dtype)
    np.copyto(terms, 0.0, where=is_top)
    return (count_top - 1.0) + np.sum(terms, axis=axes, keepdims=True)


def chunk_state(xp, x, axes, *, temperature=1.0, keep=None, widened=False):
    """``(max, sum - 1)`` of the rows of ``x`` (working dtype) over ``axes``, keepdims."""
    if any(x.shape[a] == 0 for a in axes):
        return _full_state(xp, x, axes)
    masked = x if keep is None else xp.where(keep, x, _constant(xp, -math.inf, x))
    maximum = reduce_max(xp, masked, axes)
    if _plain(maximum, temperature, keep, widened, xp):
        if is_numpy_namespace(xp):
            return maximum, _numpy_plain_sum(x, maximum, temperature, axes)
        terms = xp.exp(_plain_shifted(xp, x, maximum, temperature))
        is_top = x == maximum
        zero = _constant(xp, 0.0, x)
        # The 1s of the maxima are counted apart, for the log1p form.
        count_top = reduce_sum(xp, xp.astype(is_top, x.dtype), axes)
        rest = reduce_sum(xp, xp.where(is_top, zero, terms), axes)
        return maximum, (count_top - _constant(xp, 1.0, x)) + rest
    parts = shifted_exp(xp, x, axes, temperature=temperature, keep=keep)
    sum_minus_one = (parts.count_top - parts.one) + parts.rest_sum()
    nan = _constant(xp, math.nan, x)
    return maximum, xp.where(xp.isnan(maximum), nan, sum_minus_one)


def merge_states(xp, maximum, sum_minus_one, axes, *, temperature=1.0):
    """Merge the states laid out along ``axes`` into one (keepdims).

    ``maximum`` and ``sum_minus_one`` hold one state per position along ``axes``
    (e.g. two states concatenated along the reduced axis).
    """
    parts = shifted_exp(xp, maximum, axes, temperature=temperature)
    zero = parts.zero
    # The tops contribute (1 + s_i) each; their 1s are counted exactly, apart.
    top = (parts.count_top - parts.one) + reduce_sum(
        xp, xp.where(parts.is_top, sum_minus_one, zero), axes
    )
    weighted = (sum_minus_one + parts.one) * parts.exp_shifted
    rest = reduce_sum(xp, xp.where(parts.is_top, zero, weighted), axes)
    merged_max = reduce_max(xp, maximum, axes)
    merged = top + rest
    merged = xp.where(parts.empty, -parts.one, merged)
    nan = _constant(xp, math.nan, maximum)
    return merged_max, xp.where(xp.isnan(merged_max), nan, merged)


def _shift(xp, maximum, temperature):
    """The maximum of ``x / T`` with the core's limits for ``T = 0`` and ``T = inf``."""
    zero = _constant(xp, 0.0, maximum)
    pos_inf = _constant(xp, math.inf, maximum)
    greedy = xp.where(maximum > zero, pos_inf, xp.where(maximum < zero, -pos_inf, maximum))
    uniform = xp.where(xp.isnan(maximum), maximum, zero)
    if isinstance(temperature, float):
        if temperature == 0.0:
            return greedy
        if temperature == math.inf:
            return uniform
        if temperature == 1.0:
            return maximum
        return quiet_divide(xp, maximum, temperature, maximum.dtype, maximum)
    t_zero = temperature == zero
    t_inf = temperature == pos_inf
    t_safe = xp.where(t_zero | t_inf, _constant(xp, 1.0, maximum), temperature)
    divided = quiet_divide(xp, maximum, t_safe, maximum.dtype, maximum)
    return xp.where(t_zero, greedy, xp.where(t_inf, uniform, divided))


def state_logsumexp(xp, maximum, sum_minus_one, *, temperature=1.0):
    """``logsumexp(x / T)`` of the rows a state summarises (keepdims)."""
    zero = _constant(xp, 0.0, maximum)
    pos_inf = _constant(xp, math.inf, maximum)
    empty = maximum == -pos_inf
    finite_max = xp.where(xp.isfinite(maximum), maximum, zero)
    shift = _shift(xp, finite_max, temperature)
    result = shift + xp.log1p(xp.where(empty, zero, sum_minus_one))
    result = xp.where(maximum == pos_inf, pos_inf, result)
    result = xp.where(empty, -pos_inf, result)
    return xp.where(xp.isnan(maximum), maximum, result)


def normalize_chunk(
    xp, x, axes, maximum, sum_minus_one, *, temperature=1.0, keep=None, log=False, widened=False
):
    """softmax (or log_softmax) of a chunk of rows whose whole-row state is known."""
    if _plain(maximum, temperature, keep, widened, xp) and is_numpy_namespace(xp):
        import numpy as np

        with np.errstate(over="ignore"):  # the limits -inf, as in _numpy_plain_sum
            result = np.subtract(x, maximum)
            if temperature != 1.0:
                np.divide(result, temperature, out=result)
        if log:
            return np.subtract(result, np.log1p(sum_minus_one), out=result)
        np.exp(result, out=result)
        return np.divide(result, sum_minus_one + 1.0, out=result)
    if _plain(maximum, temperature, keep, widened, xp):
        shifted = _plain_shifted(xp, x, maximum, temperature)
        if log:
            return shifted - xp.log1p(sum_minus_one)
        return xp.exp(shifted) / (sum_minus_one + _constant(xp, 1.0, x))
    parts = shifted_exp(xp, x, axes, temperature=temperature, keep=keep, row_max=maximum)
    if log:
        log_total = xp.log1p(xp.where(parts.empty, parts.zero, sum_minus_one))
        return (parts.shifted - log_total) + parts.correction
    total = xp.where(parts.empty, parts.one, sum_minus_one + parts.one)
    return parts.exp_shifted / total
