"""The forward mappings: the threshold ``tau`` of each row, on its largest entries.

Sparsemax and 1.5-entmax sort the candidates and take the closed form; any other
alpha bisects on them. Long rows select only the top ``k`` entries, ``k`` grown by
``GROWTH`` while the support may reach past them.
"""

from __future__ import annotations

import math

import numpy as np

from .._lib._dtypes import _name
from .._lib._library import Library, library_of_namespace
from .._lib._namespace import device_of, is_lazy
from ._rows import _scalar

# Rows at least this long take the partial-sort path, starting from this many
# candidates and growing by GROWTH while the support may reach past them.
PARTIAL_MIN_LENGTH = 2048
INITIAL_CANDIDATES = 128
GROWTH = 4
# The libraries with a partial selection (see _top_candidates).
_SELECTS = (Library.NUMPY, Library.TORCH, Library.JAX)


def _shifted_scores(xp, z, keep, temperature):
    """``s = (z - max) / T`` per row (last axis), with the limits at the edges.

    ``s <= 0`` with maximum 0 on every row that has a finite maximum; masked and
    ``-inf`` entries are ``-inf``; a row holding ``+inf`` keeps 0 on its ``+inf``
    entries and ``-inf`` elsewhere (the limit shares the mass among them); an all
    ``-inf`` / all-masked row is all ``-inf``; a row holding NaN is all NaN.
    """
    zero = _scalar(xp, 0.0, z)
    neg_inf = _scalar(xp, -math.inf, z)
    pos_inf = _scalar(xp, math.inf, z)
    if keep is not None:
        z = xp.where(keep, z, neg_inf)
    row_max = xp.max(z, axis=-1, keepdims=True)
    if is_lazy(z) or not bool(xp.all(xp.isfinite(row_max))):
        pos_inf_row = row_max == pos_inf
        z = xp.where(pos_inf_row, xp.where(z == pos_inf, zero, neg_inf), z)
        row_max = xp.where(pos_inf_row | (row_max == neg_inf), zero, row_max)
    # The projection is invariant to a shift per row; shifting by the maximum puts
    # the threshold in [-1, 0) so that nothing overflows (an entry too far below
    # the maximum becomes -inf, where its probability is 0 anyway).
    s = z - row_max
    if isinstance(temperature, float):
        if temperature == 0.0:
            s = xp.where(s == zero, zero, xp.where(xp.isnan(s), s, neg_inf))
        elif temperature == math.inf:
            s = xp.where(xp.isfinite(s), zero, s)
        elif temperature != 1.0:
            s = s / temperature
        return s
    t_zero = temperature == zero
    t_inf = temperature == pos_inf
    t_safe = xp.where(t_zero | t_inf, _scalar(xp, 1.0, z), temperature)
    greedy = xp.where(s == zero, zero, xp.where(xp.isnan(s), s, neg_inf))
    uniform = xp.where(xp.isfinite(s), zero, s)
    return xp.where(t_zero, greedy, xp.where(t_inf, uniform, s / t_safe))


def _top_candidates(xp, a, k):
    """The ``k`` largest entries of each row of ``a`` (last axis), in descending order."""
    n = a.shape[-1]
    if k >= n:
        return xp.sort(a, axis=-1, descending=True)
    kind = library_of_namespace(xp)
    if kind is Library.NUMPY:
        # introselect: O(n) per row, then only the k candidates are sorted.
        part = np.partition(a, n - k, axis=-1)[..., n - k :]
        return np.flip(np.sort(part, axis=-1), axis=-1)
    if kind is Library.TORCH:
        import torch

        return torch.topk(a, k, dim=-1, largest=True, sorted=True).values
    if kind is Library.JAX:
        import jax

        return jax.lax.top_k(a, k)[0]
    return xp.sort(a, axis=-1, descending=True)


def _partial_sort_allowed(xp, a) -> bool:
    return (
        a.shape[-1] >= PARTIAL_MIN_LENGTH
        and library_of_namespace(xp) in _SELECTS
        and not is_lazy(a)
    )


def _ranks(xp, c):
    k = c.shape[-1]
    return xp.arange(1, k + 1, dtype=c.dtype, device=device_of(xp, c))


def _sparsemax_threshold(xp, c):
    """Threshold and support size from descending candidates ``c`` (Held et al. 1974).

    ``tau = max_j (sum_{i <= j} c_i - 1) / j`` (Duchi et al. 2008); the support
    is the prefix where ``1 + j c_j > sum_{i <= j} c_i``.
    """
    one = _scalar(xp, 1.0, c)
    ranks = _ranks(xp, c)
    csum = xp.cumulative_sum(c, axis=-1)
    tau = xp.max((csum - one) / ranks, axis=-1, keepdims=True)
    support = one + ranks * c > csum
    size = xp.sum(xp.astype(support, c.dtype), axis=-1, keepdims=True)
    return tau, size


def _entmax15_threshold(xp, c):
    """Exact 1.5-entmax threshold from descending candidates ``c`` (Peters et al. 2019, Alg. 2).

    For a support of size ``j``, ``tau_j = mean_j - sqrt((1 - ss_j) / j)`` with
    ``ss_j`` the sum of squared deviations from the mean; the support is the prefix
    where ``tau_j <= c_j``.
    """
    zero = _scalar(xp, 0.0, c)
    one = _scalar(xp, 1.0, c)
    ranks = _ranks(xp, c)
    csum = xp.cumulative_sum(c, axis=-1)
    csum_sq = xp.cumulative_sum(c * c, axis=-1)
    mean = csum / ranks
    ss = csum_sq - csum * mean
    delta = (one - ss) / ranks
    tau_all = mean - xp.sqrt(xp.maximum(delta, zero))
    support = tau_all <= c
    size = xp.sum(xp.astype(support, c.dtype), axis=-1, keepdims=True)
    size = xp.maximum(size, one)
    tau = xp.sum(xp.where(ranks == size, tau_all, zero), axis=-1, keepdims=True)
    return tau, size


def _power_map(xp, y, alpha):
    """``max(y, 0) ** (1 / (alpha - 1))``."""
    y = xp.maximum(y, _scalar(xp, 0.0, y))
    if alpha == 2.0:
        return y
    if alpha == 1.5:
        return y * y
    return xp.pow(y, _scalar(xp, 1.0 / (alpha - 1.0), y))


def _bisection_threshold(xp, c, alpha, n, n_iter, tol):
    """The threshold by bisection on candidates ``c`` of rows of length ``n``.

    With the row maximum at 0, ``tau`` lies in ``[-1, -(1/n) ** (alpha - 1)]``
    (the largest entry has probability at most 1 and at least 1/n); the bracket
    has the same width on every row, so the number of steps needs no data.
    """
    one = _scalar(xp, 1.0, c)
    tau_lo = xp.zeros_like(c[..., :1]) - one
    width = 1.0 - (1.0 / n) ** (alpha - 1.0)
    for _ in range(n_iter):
        width /= 2.0
        tau_mid = tau_lo + width
        f_mid = xp.sum(_power_map(xp, c - tau_mid, alpha), axis=-1, keepdims=True) - one
        tau_lo = xp.where(f_mid >= 0, tau_mid, tau_lo)
        if tol is not None and width < tol:
            break
    return tau_lo


def _threshold(xp, n, candidates, method, partial):
    """The threshold ``tau`` of each row, from its largest shifted, scaled scores.

    ``candidates(k)`` gives the ``k`` largest entries of each row in the units of
    the threshold (row maximum 0), in descending order, in the working dtype.
    Also returns the sum of the unnormalized probabilities (None for sparsemax,
    whose closed form sums to 1 as it is).
    """
    k = min(n, INITIAL_CANDIDATES) if partial else n
    while True:
        c = candidates(k)
        # Entries below -1 never reach the support (tau >= -1); clipping them to -2
        # keeps every candidate finite (-inf would make inf - inf in the sums).
        c = xp.maximum(c, _scalar(xp, -2.0, c))
        if method.exact and method.alpha == 2.0:
            tau, size = _sparsemax_threshold(xp, c)
        elif method.exact:
            tau, size = _entmax15_threshold(xp, c)
        else:
            tau = _bisection_threshold(xp, c, method.alpha, n, method.n_iter, method.tol)
        total = None
        if not (method.exact and method.alpha == 2.0):
            # The probabilities' sum, from the candidates: it renormalizes the
            # rounding of sqrt (1.5-entmax) and the bisection's bracket.
            total = xp.sum(_power_map(xp, c - tau, method.alpha), axis=-1, keepdims=True)
            total = xp.where(total == 0, _scalar(xp, 1.0, total), total)
        if k >= n:
            return tau, total
        if method.exact:
            # Only rows with a finite maximum (c_1 == 0) can need more candidates.
            unsolved = (size == k) & (c[..., :1] == 0)
        else:
            unsolved = c[..., -1:] > tau
        if not bool(xp.any(unsolved)):
            return tau, total
        k = min(n, k * GROWTH)


def _project_rows(xp, z, keep, temperature, method, work, scores=False):
    """Probabilities of rows ``z`` (last axis), and the shifted scores if ``scores``.

    ``z`` may still be in the input's dtype (float32 or float64) when ``work`` is
    wider: the common rows (finite maximum, scalar temperature) select their
    candidates in that dtype and convert only the candidates and the final map.
    """
    if keep is not None:
        z = xp.where(keep, z, _scalar(xp, -math.inf, z))
    if not scores and _fast_path_allowed(xp, z, temperature):
        row_max = xp.max(z, axis=-1, keepdims=True)
        if bool(xp.all(xp.isfinite(row_max))):
            return _project_finite_rows(xp, z, row_max, temperature, method, work), None
    s = _shifted_scores(xp, xp.astype(z, work), None, temperature)
    alpha = method.alpha
    a = s if alpha == 2.0 else s * _scalar(xp, alpha - 1.0, s)
    tau, total = _threshold(
        xp,
        a.shape[-1],
        lambda k: _top_candidates(xp, a, k),
        method,
        _partial_sort_allowed(xp, a),
    )
    p = _power_map(xp, a - tau, alpha)
    if total is not None:
        p = p / total
    return p, s


def _fast_path_allowed(xp, z, temperature) -> bool:
    return (
        isinstance(temperature, float)
        and 0.0 < temperature < math.inf
        and not is_lazy(z)
        and library_of_namespace(xp) in (Library.NUMPY, Library.TORCH)
    )


def _project_finite_rows(xp, z, row_max, temperature, method, work):
    """The mapping of rows with a finite maximum, at a scalar temperature.

    ``p = max((z - m) * scale - tau, 0) ** (1 / (alpha - 1)) / total`` with
    ``scale = (alpha - 1) / T``, computed in place on one working-dtype copy.
    """
    alpha = method.alpha
    scale = (alpha - 1.0) / temperature
    m = xp.astype(row_max, work)

    def candidates(k):
        c = xp.astype(_top_candidates(xp, z, k), work) - m
        return c * scale if scale != 1.0 else c

    tau, total = _threshold(xp, z.shape[-1], candidates, method, _partial_sort_allowed(xp, z))
    exponent = 1.0 / (alpha - 1.0)
    # With float64 work for a narrower result, folding tau into the shift costs
    # ulp64(m), far below the result's resolution while |m| < 2**20.
    fold = (
        _name(work) == "float64"
        and _name(z.dtype) != "float64"
        and bool(xp.all(xp.abs(m) < 2.0**20))
    )
    kind = library_of_namespace(xp)
    if fold and kind is Library.NUMPY and alpha == 2.0 and scale == 1.0:
        # Sparsemax at T = 1: z - shift is computed in float64 and rounded once
        # into the input's dtype; the clamp at 0 is exact. No float64 array.
        y = np.empty_like(z)
        np.subtract(z, m + tau, out=y, casting="same_kind")
        return np.maximum(y, 0.0, out=y)
    if fold and kind is Library.TORCH and alpha in (2.0, 1.5):
        # PyTorch's mixed float32/float64 arithmetic is slow; the shift is split
        # into float32 hi + lo instead. z - hi is exact when it is small (Sterbenz)
        # and rounds once otherwise, so y is within 1 ulp of z - shift.
        shift = m + tau / scale
        hi = xp.astype(shift, z.dtype)
        lo = xp.astype(shift - xp.astype(hi, shift.dtype), z.dtype)
        y = (z - hi).sub_(lo).clamp_(min=0.0)
        if alpha == 1.5:
            y.square_()
        factor = scale**exponent
        factor = factor if total is None else factor / total
        if not (isinstance(factor, float) and factor == 1.0):
            y.mul_(xp.astype(factor, z.dtype) if not isinstance(factor, float) else factor)
        return y
    if fold:
        y = z - (m + tau / scale)
        factor = scale**exponent
        factor = factor if total is None else factor / total
        tail = None
    else:
        y = z - m
        factor = None if total is None else 1.0 / total
        tail = tau
    if kind is Library.NUMPY:
        if not fold and scale != 1.0:
            np.multiply(y, scale, out=y)
        if tail is not None:
            np.subtract(y, tail, out=y)
        np.maximum(y, 0.0, out=y)
        if alpha == 1.5:
            np.square(y, out=y)
        elif alpha != 2.0:
            np.power(y, exponent, out=y)
        if factor is not None and not (isinstance(factor, float) and factor == 1.0):
            np.multiply(y, factor, out=y)
        return y
    if not fold and scale != 1.0:
        y.mul_(scale)
    if tail is not None:
        y.sub_(tail)
    y.clamp_(min=0.0)
    if alpha == 1.5:
        y.square_()
    elif alpha != 2.0:
        y.pow_(exponent)
    if factor is not None and not (isinstance(factor, float) and factor == 1.0):
        y.mul_(factor)
    return y
