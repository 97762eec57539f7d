"""The layout of the sparse mappings: which mapping, rows of the normalized axes, dtypes."""

from __future__ import annotations

import math

import numpy as np

from .._lib._dtypes import _name
from .._lib._namespace import device_of
from .._lib._validation import check_int, check_real


class _Method:
    """Which mapping: 'sort' (exact, alpha 2 or 1.5) or 'bisect' (any alpha > 1)."""

    __slots__ = ("alpha", "exact", "n_iter", "tol")

    def __init__(self, alpha, exact, n_iter=50, tol=None):
        self.alpha = alpha
        self.exact = exact
        self.n_iter = n_iter
        self.tol = tol


def _to_rows(xp, a, axes):
    """``a`` with the normalized axes moved last and flattened into one: (batch..., n)."""
    ndim = a.ndim
    rest = tuple(d for d in range(ndim) if d not in axes)
    perm = rest + tuple(axes)
    if perm != tuple(range(ndim)):
        a = xp.permute_dims(a, perm)
    permuted_shape = tuple(a.shape)
    batch = permuted_shape[: len(rest)]
    n = math.prod(permuted_shape[len(rest) :])
    return xp.reshape(a, batch + (n,)), perm, permuted_shape


def _from_rows(xp, a, perm, permuted_shape):
    a = xp.reshape(a, permuted_shape)
    if perm != tuple(range(len(perm))):
        inverse = tuple(int(i) for i in np.argsort(perm))
        a = xp.permute_dims(a, inverse)
    return a


def _temperature_rows(xp, temperature, perm, ndim_rest):
    """A per-row temperature array (length 1 on the normalized axes) in row layout."""
    if isinstance(temperature, float):
        return temperature
    t = temperature
    if perm != tuple(range(len(perm))):
        t = xp.permute_dims(t, perm)
    return xp.reshape(t, tuple(t.shape[:ndim_rest]) + (1,))


def _scalar(xp, value, like):
    return xp.asarray(value, dtype=like.dtype, device=device_of(xp, like))


def _temperature_array(temperature):
    return None if isinstance(temperature, (int, float)) else temperature


def _without_gradient(temperature):
    """A PyTorch temperature detached: gradients flow to ``x`` only."""
    detach = getattr(temperature, "detach", None)
    return detach() if callable(detach) and not isinstance(temperature, np.ndarray) else temperature


def _elementwise_dtype(xp, result_dtype, work_dtype):
    return result_dtype if _name(result_dtype) in ("float32", "float64") else work_dtype


def _check_alpha(alpha) -> float:
    """``alpha``: a finite real number >= 1 (1 is softmax, 2 sparsemax)."""
    return check_real("alpha", alpha, low=1, finite=True)


def _bisection(alpha, n_iter, tol) -> _Method:
    """The checked options of the bisection (``alpha`` already checked)."""
    n_iter = check_int("n_iter", n_iter, low=1)
    if tol is not None:
        tol = check_real("tol", tol, low=0, low_open=True)
    return _Method(alpha, exact=False, n_iter=n_iter, tol=tol)
