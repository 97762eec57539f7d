"""The closed-form gradients: the VJP formula, the autograd glue, the public ``*_vjp``."""

from __future__ import annotations

import math

import numpy as np

from .._lib._autograd import differentiable
from .._lib._dtypes import plan_dtypes
from .._lib._namespace import array_namespace, as_array, is_numpy_namespace
from .._lib._typing import Array, ArrayLike, Axis, Real, Temperature
from .._lib._validation import check_same_shape, check_temperature, normalize_axis
from ._rows import _check_alpha, _elementwise_dtype, _scalar, _temperature_array


def _vjp_core(xp, p, g, axes, alpha, temperature):
    """``J^T g`` of the mapping at output ``p`` (Peters et al. 2019, Prop. 1).

    ``dx = gppr * g - gppr * sum(gppr * g) / sum(gppr)`` with ``gppr = p ** (2 - alpha)``
    on the support and 0 off it. Only float arithmetic (no boolean masks), in
    the dtype of ``p``: the row sums use the library's pairwise (NumPy) or
    cascade (PyTorch) summation.
    """
    zero = _scalar(xp, 0.0, p)
    if alpha == 2.0:
        # p >= 0: sign(p) is the support's indicator (NaN on a NaN row).
        gppr = xp.sign(p)
    elif alpha == 1.5:
        gppr = xp.sqrt(p)
    elif alpha == 1.0:
        gppr = p
    elif alpha < 2.0:
        # 0 ** (2 - alpha) is 0 off the support.
        gppr = xp.pow(p, _scalar(xp, 2.0 - alpha, p))
    else:
        support = p > zero
        powered = xp.pow(xp.where(support, p, _scalar(xp, 1.0, p)), _scalar(xp, 2.0 - alpha, p))
        gppr = xp.where(support, powered, zero)
    weighted = g * gppr
    if axes:
        numerator = xp.sum(weighted, axis=axes, keepdims=True)
        denominator = xp.sum(gppr, axis=axes, keepdims=True)
    else:
        numerator, denominator = weighted, gppr
    safe = xp.where(denominator == zero, _scalar(xp, 1.0, denominator), denominator)
    grad = weighted - (numerator / safe) * gppr
    if isinstance(temperature, float):
        if temperature == 0.0 or temperature == math.inf:
            return xp.zeros_like(grad)
        if temperature != 1.0:
            grad = grad / temperature
        return grad
    # Greedy and uniform limits are piecewise constant: zero gradient.
    t = xp.astype(temperature, p.dtype)
    edge = (t == zero) | (t == _scalar(xp, math.inf, p))
    return xp.where(edge, zero, grad / xp.where(edge, _scalar(xp, 1.0, p), t))


def _with_gradient(source, forward, backward):
    """``forward(source)[0]``, differentiable in PyTorch and JAX through ``backward``
    (``forward(x) -> (out, saved)``, ``backward(saved, g) -> dx``)."""
    return differentiable(forward, lambda saved, g: (backward(saved, g),), source)


def _vjp(y, cotangent, axis, alpha, temperature):
    xp = array_namespace(y, cotangent, _temperature_array(temperature))
    y = as_array(xp, y)
    cotangent = as_array(xp, cotangent)
    plan = plan_dtypes(xp, y, None)
    axes = normalize_axis(axis, y.ndim)
    check_same_shape("cotangent", cotangent, "y", y)
    t = check_temperature(xp, temperature, y, axes, plan.work)
    dtype = _elementwise_dtype(xp, plan.result, plan.work)
    grad = _vjp_core(xp, xp.astype(y, dtype), xp.astype(cotangent, dtype), axes, alpha, t)
    grad = xp.astype(grad, plan.result)
    return np.asarray(grad) if is_numpy_namespace(xp) else grad


def sparsemax_vjp(
    y: ArrayLike, cotangent: ArrayLike, /, axis: Axis = -1, *, temperature: Temperature = 1.0
) -> Array:
    r"""The gradient of ``sum(cotangent * sparsemax(x))`` with respect to ``x``.

    Parameters
    ----------
    y : array_like
        The output ``sparsemax(x, axis, temperature=temperature)``.
    cotangent : array_like
        The upstream gradient, of the shape of ``y``.
    axis : int, tuple of int or None, default -1
        The axis that sparsemax normalized over.
    temperature : float or array, default 1.0
        The temperature that sparsemax used.

    Returns
    -------
    array
        ``(cotangent - mean over the support) / T`` on the support, 0 elsewhere.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> y = smk.sparsemax([1.0, 3.0, 2.5])
    >>> smk.sparsemax_vjp(y, [1.0, 0.0, 0.0])
    array([0., 0., 0.])
    >>> smk.sparsemax_vjp(y, [0.0, 1.0, 0.0])
    array([ 0. ,  0.5, -0.5])
    """
    return _vjp(y, cotangent, axis, 2.0, temperature)


def entmax_vjp(
    y: ArrayLike,
    cotangent: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    alpha: Real = 1.5,
    temperature: Temperature = 1.0,
) -> Array:
    r"""The gradient of ``sum(cotangent * entmax(x, alpha=alpha))`` with respect to ``x``.

    ``dx = (gppr * g - gppr * sum(gppr * g) / sum(gppr)) / T`` with
    ``gppr = y ** (2 - alpha)`` on the support (Peters et al. 2019); ``alpha = 1``
    is the softmax gradient.

    Parameters
    ----------
    y : array_like
        The output of :func:`entmax` (or :func:`entmax15`, :func:`sparsemax`).
    cotangent : array_like
        The upstream gradient, of the shape of ``y``.
    axis : int, tuple of int or None, default -1
        The axis the mapping normalized over.
    alpha : float, default 1.5
        The ``alpha`` of the mapping (>= 1).
    temperature : float or array, default 1.0
        The temperature of the mapping.

    Returns
    -------
    array
        The gradient with respect to the scores, of the shape of ``y``.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> y = smk.entmax15([1.0, 3.0, 2.5])
    >>> smk.entmax_vjp(y, [0.0, 1.0, 0.0], alpha=1.5).round(6)
    array([ 0.     ,  0.33676, -0.33676])
    """
    return _vjp(y, cotangent, axis, _check_alpha(alpha), temperature)
