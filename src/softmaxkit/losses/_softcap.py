"""The soft cap of the logits, ``softcap * tanh(x / softcap)``, and its derivative."""

from __future__ import annotations

import math

import numpy as np

from .. import _kernels


def _softcapped(xp, values, softcap, plan, workspace=None):
    """``softcap * tanh(values / softcap)`` (``-inf`` kept) and its derivative.

    Computed in the working dtype and returned in the result dtype, so that
    ``log_softmax`` sees logits of the caller's floating dtype (its fast path).
    """
    capped, derivative = _softcapped_lazily(xp, values, softcap, plan, workspace)
    return capped, derivative.array()


def _softcapped_lazily(xp, values, softcap, plan, workspace=None, want_derivative=True):
    """:func:`_softcapped` with the derivative as a :class:`_Derivative`.

    For NumPy float32 logits the kernel (:func:`softmaxkit._kernels.softcap`) writes
    the capped logits, and with ``want_derivative`` the derivative (float64, into the
    workspace), in one pass; without it the derivative is computed only if asked for.
    :meth:`_Derivative.scale` multiplies a gradient by it in one more pass.
    """
    if isinstance(values, np.ndarray) and plan.result == np.float32:
        if workspace is None:
            workspace = _SoftcapWorkspace(values.shape)
        n_rows = values.shape[0]
        out = workspace.capped(n_rows)
        if want_derivative:
            derivative = workspace.derivative(n_rows)
            capped = _kernels.softcap(_kernels.SOFTCAP_BOTH, values, out, softcap, derivative)
            lazy = _Derivative(array=derivative)
        else:
            capped = _kernels.softcap(_kernels.SOFTCAP_VALUES, values, out, softcap)
            lazy = _Derivative(values=values, softcap=softcap, workspace=workspace)
        if capped is not NotImplemented:
            return capped, lazy
        capped, derivative = _softcapped_float32(values, softcap, workspace)
        return capped, _Derivative(array=derivative)
    work = xp.astype(values, plan.work)
    tanh = xp.tanh(work / softcap)
    neg_inf = work == -math.inf
    capped = xp.where(neg_inf, work, softcap * tanh)
    return xp.astype(capped, plan.result), _Derivative(array=1.0 - tanh * tanh)


class _Derivative:
    """The soft cap's derivative ``1 - tanh(x / softcap)**2``: an array already
    computed, or float32 logits from which the kernel computes it when asked."""

    def __init__(self, *, array=None, values=None, softcap=None, workspace=None):
        self._array, self._values = array, values
        self._softcap, self._workspace = softcap, workspace

    def array(self):
        """The derivative as an array (float64 for NumPy float32 logits)."""
        if self._array is None:
            values = self._values
            out = self._workspace.derivative(values.shape[0])
            done = _kernels.softcap(_kernels.SOFTCAP_DERIVATIVE, values, out, self._softcap)
            if done is NotImplemented:
                out = _softcapped_float32(values, self._softcap)[1]
            self._array = out
        return self._array

    def scale(self, out):
        """Multiplies the gradient ``out`` (a NumPy array) by the derivative in place."""
        if self._array is None:
            done = _kernels.softcap(_kernels.SOFTCAP_SCALE, self._values, out, self._softcap)
        else:
            done = _kernels.softcap(_kernels.SOFTCAP_SCALE_BY, self._array, out, 1.0)
        if done is NotImplemented:
            out *= self.array()


def _softcapped_float32(values, softcap, workspace=None):
    """:func:`_softcapped` for NumPy float32 logits, in float64 without ``np.tanh``.

    The road where the kernel is not there (or declines): the kernel computes the
    same in one pass. NumPy's float64 ``tanh`` is a scalar loop, several times slower
    than the rest of the cross-entropy. With ``e = exp(-2|u|)`` in (0, 1],
    ``|tanh u| = (1 - e) / (1 + e)`` and ``1 - tanh(u)**2 = 4 e / (1 + e)**2``: no
    cancellation in the derivative, and a relative error below 1e-13 in ``tanh``
    where ``|u| >= 2**-10`` (``1 - e`` loses ``log2(1 / 2|u|)`` bits); below that,
    ``u - u**3 / 3`` is as close. Both are far below float32's resolution, so the
    capped logits round as those of ``np.tanh``.

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
    """Buffers of the soft cap of NumPy float32 logits for blocks of up to ``shape[0]``
    rows, each made when first needed: the capped logits (float32), the derivative
    (float64), and those of :func:`_softcapped_float32`."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self._capped = self._derivative = self._buffers = None

    def capped(self, n_rows):
        if self._capped is None:
            self._capped = np.empty(self.shape, dtype=np.float32)
        return self._capped[:n_rows]

    def derivative(self, n_rows):
        if self._derivative is None:
            self._derivative = np.empty(self.shape, dtype=np.float64)
        return self._derivative[:n_rows]

    def views(self, n_rows):
        if self._buffers is None:
            self._buffers = [np.empty(self.shape, dtype=np.float64) for _ in range(4)]
            self._buffers.append(np.empty(self.shape, dtype=np.bool_))
        return [buffer[:n_rows] for buffer in self._buffers] + [self.capped(n_rows)]
