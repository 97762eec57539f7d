"""Independent high-precision references for softmax, log_softmax and logsumexp.

Two ways, neither sharing code with softmaxkit: mpmath at 60 digits (short rows),
and NumPy's extended ``longdouble`` (64-bit significand on x86; long rows).
"""

from __future__ import annotations

import mpmath
import numpy as np

mpmath.mp.dps = 60


def _rows(x, axis):
    x = np.asarray(x)
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def mp_row(values):
    """(softmax, log_softmax, logsumexp) of one finite row, as mpmath numbers."""
    row = [mpmath.mpf(float(v)) for v in values]
    top = max(row)
    # Differences of float64 values are exact at 60 digits; log1p of the sum below the
    # top keeps relative accuracy for results far below 10**-60.
    shifted = [v - top for v in row]
    top_index = shifted.index(0)
    rest = mpmath.fsum(mpmath.exp(d) for i, d in enumerate(shifted) if i != top_index)
    log_total = mpmath.log1p(rest)
    return (
        [mpmath.exp(d - log_total) for d in shifted],
        [d - log_total for d in shifted],
        top + log_total,
    )


def mp_reference(x, axis=-1):
    """float64 arrays of the exact results (rounded once), for finite ``x``."""
    rows, shape = _rows(np.asarray(x, dtype=np.float64), axis)
    p = np.empty(rows.shape)
    lp = np.empty(rows.shape)
    lse = np.empty(rows.shape[0])
    for i, row in enumerate(rows):
        sm, lsm, total = mp_row(row)
        p[i] = [float(v) for v in sm]
        lp[i] = [float(v) for v in lsm]
        lse[i] = float(total)
    restore = lambda a: np.moveaxis(a.reshape(shape), -1, axis)  # noqa: E731
    return restore(p), restore(lp), lse.reshape(shape[:-1])


def longdouble_reference(x, axis=-1):
    """Extended-precision results for finite ``x`` (long rows)."""
    x = np.asarray(x, dtype=np.longdouble)
    row_max = np.max(x, axis=axis, keepdims=True)
    shifted = x - row_max
    total = np.sum(np.exp(shifted), axis=axis, keepdims=True)
    log_total = np.log(total)
    lse = np.squeeze(row_max + log_total, axis=axis)
    return np.exp(shifted - log_total), shifted - log_total, lse


def ulp_error(computed, exact, dtype):
    """Elementwise |computed - exact| in units of the last place of ``exact`` in ``dtype``."""
    computed = np.asarray(computed, dtype=np.longdouble)
    exact = np.asarray(exact, dtype=np.longdouble)
    both_inf = np.isinf(exact) & (computed == exact)
    with np.errstate(over="ignore", invalid="ignore"):
        spacing = np.spacing(np.abs(exact.astype(dtype))).astype(np.longdouble)
    spacing = np.maximum(spacing, np.finfo(dtype).smallest_subnormal)
    with np.errstate(invalid="ignore"):
        error = np.abs(computed - exact) / spacing
    return np.where(both_inf, 0, error)
