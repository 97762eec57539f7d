"""The soft cap of the logits, ``softcap * tanh(x / softcap)``, and its derivative."""

from __future__ import annotations

import math

import numpy as np


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
