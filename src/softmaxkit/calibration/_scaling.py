"""Vector and matrix scaling: an affine map of the logits fitted by maximum likelihood.

Guo, Pleiss, Sun & Weinberger (2017), section 4.2: vector scaling calibrates
``z -> s * z + b`` (one scale and one bias per class), matrix scaling
``z -> W z + b``. Both are multinomial logistic regressions on the logits, so the
mean NLL is convex in the parameters and L-BFGS (SciPy's ``L-BFGS-B``, with the
analytic gradient) finds its minimum. Matrix scaling has ``K^2 + K`` parameters
and overfits on few samples; the L2 penalty on the off-diagonal of ``W`` and on
``b`` of Kull et al. (2019), "Beyond temperature scaling: obtaining well-calibrated
multi-class probabilities with Dirichlet calibration" (ODIR), keeps it near a
temperature.

The fit starts from the fitted temperature (``s = 1/T``, ``W = I/T``, ``b = 0``).
Adding a constant to every bias, or a common row to ``W``, changes no
probability; the gradient of the NLL is orthogonal to those directions, so the
fit keeps the starting point's choice: biases that sum to 0, and (without the
off-diagonal penalty, which settles them itself) the column sums of ``I/T``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._lib._namespace import array_namespace, as_array
from .._lib._typing import Array, ArrayLike, Int, Real
from .._lib._validation import check_int, check_real, class_axis
from .._softmax import log_softmax
from ._inputs import (
    CalibrationWarning,
    check_bounds,
    check_class_count,
    check_finite_logits,
    check_parameter_shapes,
    labelled,
)
from ._temperature import solve_temperature

__all__ = ["fit_vector_scaling", "fit_matrix_scaling", "VectorScaling", "MatrixScaling"]

# L-BFGS-B stops when the largest gradient entry is below this (the mean NLL has
# gradients of order 1), or when a step gains less than its rounding allows; a fit
# that ends with an entry above CONVERGED (which moves the loss by ~1e-8) warns.
GRADIENT_TOLERANCE = 1e-9
CONVERGED = 1e-4


def _minimize():
    try:
        from scipy.optimize import minimize
    except ImportError as error:
        raise ImportError(
            "vector and matrix scaling need SciPy: pip install \"softmaxkit[calibration]\""
        ) from error
    return minimize


class _AffineNLL:
    """The weighted mean NLL of ``softmax(a)`` with ``a`` affine in the parameters.

    ``logits`` are the data's divided by the fitted temperature: the fit then starts
    from the identity with every parameter of order 1, which L-BFGS needs to
    converge in few steps when the logits are large (an over-confident model).
    """

    def __init__(self, data, temperature):
        self.temperature = temperature
        self.logits = data.values[data.weight > 0] / temperature
        self.weight = data.weight[data.weight > 0]
        self.target = data.one_hot()[data.weight > 0]

    def loss_and_residual(self, scores):
        """``(L, G)``: the mean NLL and its gradient with respect to the scores."""
        log_p = log_softmax(scores)
        terms = np.where(self.target > 0, self.target * log_p, 0.0)
        loss = -float(np.dot(self.weight, terms.sum(axis=1)))
        residual = (np.exp(log_p) - self.target) * self.weight[:, None]
        return loss, residual


def _run_lbfgs(objective, start, max_iter, method):
    minimize = _minimize()
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": GRADIENT_TOLERANCE, "ftol": 1e-15},
    )
    _, gradient = objective(result.x)
    largest = float(np.max(np.abs(gradient)))
    if not largest <= CONVERGED:
        warnings.warn(
            f"{method} scaling did not converge in {result.nit} iterations (largest "
            f"gradient entry {largest:.3g}: {result.message}); the logits may separate the "
            "labels, or max_iter is too small",
            CalibrationWarning,
            stacklevel=3,
        )
    return result


def _along(xp, vector, ndim, axis, like, dtype):
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return xp.reshape(as_array(xp, vector, like=like, dtype=dtype), tuple(shape))


def _prepared(logits, axis, n_classes, name):
    xp = array_namespace(logits)
    z = as_array(xp, logits)
    if not xp.isdtype(z.dtype, "real floating"):
        z = xp.astype(z, xp.asarray(0.0).dtype)
    ndim = z.ndim
    axis = class_axis(axis, ndim, "logits")
    check_class_count(z, axis, n_classes, name)
    return xp, z, axis


def _apply_matrix(xp, z, weight, axis):
    """``sum_j weight[k, j] z[..., j, ...]`` along ``axis``, as an array of ``xp``."""
    if getattr(xp, "is_tensorflow_adapter", False):  # no matmul in the adapter
        import tensorflow as tf

        product = tf.tensordot(z, tf.transpose(weight), axes=[[axis], [0]])
        return tf.experimental.numpy.moveaxis(product, -1, axis)
    last = z.ndim - 1
    if axis != last:
        z = xp.moveaxis(z, axis, last)
    product = xp.matmul(z, xp.matrix_transpose(weight))
    return product if axis == last else xp.moveaxis(product, last, axis)


@dataclass(frozen=True, eq=False)
class VectorScaling:
    """Fitted vector scaling: calibrated logits ``scale * z + bias`` along ``axis``.

    Returned by :func:`fit_vector_scaling`; calling it (or :meth:`apply`) maps
    logits of any supported library to calibrated logits of the same library.

    Attributes
    ----------
    scale, bias : ndarray of shape (classes,)
        The parameters (float64; the biases sum to 0).
    axis : int
        The class axis the fit used (and :meth:`apply` uses).
    nll : float
        The mean NLL of the fitted data after calibration.
    n_iter : int
        L-BFGS iterations.
    """

    scale: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    axis: int = -1
    nll: float = math.nan
    n_iter: int = 0

    def __post_init__(self):
        scale = np.asarray(self.scale, dtype=np.float64)
        bias = np.asarray(self.bias, dtype=np.float64)
        check_parameter_shapes("scale", scale, bias, matrix=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "bias", bias)

    def apply(self, logits: ArrayLike) -> Array:
        """The calibrated logits ``scale * logits + bias``, on the input's library.

        Examples
        --------
        >>> import numpy as np
        >>> from softmaxkit.calibration import VectorScaling
        >>> VectorScaling(np.array([0.5, 2.0]), np.array([1.0, -1.0])).apply([[2.0, 2.0]])
        array([[2., 3.]])
        """
        xp, z, axis = _prepared(logits, self.axis, self.scale.shape[0], "the scaling")
        scale = _along(xp, self.scale, z.ndim, axis, z, z.dtype)
        bias = _along(xp, self.bias, z.ndim, axis, z, z.dtype)
        return z * scale + bias

    __call__ = apply

    def __repr__(self):
        return (
            f"VectorScaling(classes={self.scale.shape[0]}, axis={self.axis}, "
            f"nll={self.nll:.6g}, n_iter={self.n_iter})"
        )


@dataclass(frozen=True, eq=False)
class MatrixScaling:
    """Fitted matrix scaling: calibrated logits ``W z + b`` along ``axis``.

    Returned by :func:`fit_matrix_scaling`; calling it (or :meth:`apply`) maps
    logits of any supported library to calibrated logits of the same library.

    Attributes
    ----------
    weight : ndarray of shape (classes, classes)
        ``W`` (float64): calibrated logit ``k`` is ``sum_j W[k, j] z_j + b_k``.
    bias : ndarray of shape (classes,)
        ``b`` (float64).
    axis : int
        The class axis the fit used (and :meth:`apply` uses).
    nll : float
        The mean NLL of the fitted data after calibration (without the penalty).
    n_iter : int
        L-BFGS iterations.
    """

    weight: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    axis: int = -1
    nll: float = math.nan
    n_iter: int = 0

    def __post_init__(self):
        weight = np.asarray(self.weight, dtype=np.float64)
        bias = np.asarray(self.bias, dtype=np.float64)
        check_parameter_shapes("weight", weight, bias, matrix=True)
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)

    def apply(self, logits: ArrayLike) -> Array:
        """The calibrated logits ``W z + b`` of each row ``z``, on the input's library.

        Examples
        --------
        >>> import numpy as np
        >>> from softmaxkit.calibration import MatrixScaling
        >>> scaling = MatrixScaling(np.array([[1.0, 1.0], [0.0, 2.0]]), np.zeros(2))
        >>> scaling([[1.0, 3.0]])
        array([[4., 6.]])
        """
        xp, z, axis = _prepared(logits, self.axis, self.bias.shape[0], "the scaling")
        weight = as_array(xp, self.weight, like=z, dtype=z.dtype)
        bias = _along(xp, self.bias, z.ndim, axis, z, z.dtype)
        return _apply_matrix(xp, z, weight, axis) + bias

    __call__ = apply

    def __repr__(self):
        return (
            f"MatrixScaling(classes={self.bias.shape[0]}, axis={self.axis}, "
            f"nll={self.nll:.6g}, n_iter={self.n_iter})"
        )


def _common(logits, labels, axis, weight, ignore_index, max_iter, method):
    check_int("max_iter", max_iter, low=1)
    ignore_index = check_int("ignore_index", ignore_index)
    data = labelled(logits, labels, axis=axis, weight=weight, ignore_index=ignore_index)
    check_finite_logits(data, method)
    temperature, _ = solve_temperature(data, check_bounds((1e-2, 1e2)))
    return data, temperature


def fit_vector_scaling(
    logits: ArrayLike,
    labels: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    max_iter: Int = 1000,
) -> VectorScaling:
    r"""Fit vector scaling: one scale and one bias per class, ``z -> s * z + b``.

    Guo, Pleiss, Sun & Weinberger (2017). The parameters minimise the mean NLL of
    ``labels`` under ``softmax(s * logits + b)``, by L-BFGS with the analytic
    gradient, starting from the fitted temperature. Unlike temperature scaling it
    can change predictions.

    Parameters
    ----------
    logits : array_like
        Finite scores of shape ``(..., classes, ...)`` of any supported library.
    labels : array_like
        Integer class indices, or class probabilities of floating dtype, as in
        :func:`fit_temperature`.
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        One weight >= 0 per sample.
    ignore_index : int, default -100
        A class index that marks a sample taking no part.
    max_iter : int, default 1000
        The most L-BFGS iterations.

    Returns
    -------
    VectorScaling
        The fitted map; ``result(logits)`` gives calibrated logits.

    Raises
    ------
    ValueError
        As :func:`fit_temperature`, and for logits that are not finite.
    ImportError
        Without SciPy (the ``calibration`` extra).

    Warns
    -----
    CalibrationWarning
        When L-BFGS stops before the gradient vanishes (separable data, where the
        scales grow without bound, or too few iterations).

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=20000)
    >>> logits = rng.normal(size=(20000, 3)) + 2.0 * np.eye(3)[labels]  # calibrated at 2 z
    >>> skewed = logits * [3.0, 1.0, 0.5] + [1.0, 0.0, -1.0]   # miscalibrated per class
    >>> scaling = smk.fit_vector_scaling(skewed, labels)
    >>> bool(np.allclose(scaling.scale * [3.0, 1.0, 0.5], 2.0, atol=0.2))
    True
    >>> bool(smk.negative_log_likelihood(scaling(skewed), labels, from_logits=True)
    ...      < smk.negative_log_likelihood(skewed, labels, from_logits=True))
    True
    """
    data, temperature = _common(logits, labels, axis, weight, ignore_index, max_iter, "vector")
    nll = _AffineNLL(data, temperature)
    n_classes = data.n_classes
    z = nll.logits

    def objective(theta):
        scale, bias = theta[:n_classes], theta[n_classes:]
        loss, residual = nll.loss_and_residual(z * scale + bias)
        gradient = np.concatenate([np.einsum("ij,ij->j", residual, z), residual.sum(axis=0)])
        return loss, gradient

    start = np.concatenate([np.ones(n_classes), np.zeros(n_classes)])
    result = _run_lbfgs(objective, start, max_iter, "vector")
    scale, bias = result.x[:n_classes].copy(), result.x[n_classes:].copy()
    loss = nll.loss_and_residual(z * scale + bias)[0]
    return VectorScaling(
        scale / temperature, bias, axis=data.axis, nll=loss, n_iter=int(result.nit)
    )


def fit_matrix_scaling(
    logits: ArrayLike,
    labels: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    l2_off_diagonal: Real = 0.0,
    l2_bias: Real = 0.0,
    max_iter: Int = 1000,
) -> MatrixScaling:
    r"""Fit matrix scaling: a full affine map of the logits, ``z -> W z + b``.

    Guo, Pleiss, Sun & Weinberger (2017). The parameters minimise

        mean NLL(softmax(W z + b)) + l2_off_diagonal * sum_{k != j} W_kj^2
                                   + l2_bias * sum_k b_k^2

    by L-BFGS with the analytic gradient, starting from the fitted temperature
    (``W = I/T``). With ``K`` classes there are ``K^2 + K`` parameters: on few
    samples the fit overfits, and the penalties (Kull et al. 2019, ODIR) pull it
    towards a per-class scaling without bias.

    Parameters
    ----------
    logits : array_like
        Finite scores of shape ``(..., classes, ...)`` of any supported library.
    labels : array_like
        Integer class indices, or class probabilities of floating dtype.
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        One weight >= 0 per sample.
    ignore_index : int, default -100
        A class index that marks a sample taking no part.
    l2_off_diagonal : float, default 0
        The L2 penalty on the off-diagonal entries of ``W`` (>= 0).
    l2_bias : float, default 0
        The L2 penalty on ``b`` (>= 0).
    max_iter : int, default 1000
        The most L-BFGS iterations.

    Returns
    -------
    MatrixScaling
        The fitted map; ``result(logits)`` gives calibrated logits.

    Raises
    ------
    ValueError
        As :func:`fit_vector_scaling`, and for a negative penalty.
    ImportError
        Without SciPy (the ``calibration`` extra).

    Warns
    -----
    CalibrationWarning
        When L-BFGS stops before the gradient vanishes.

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=3000)
    >>> logits = rng.normal(size=(3000, 3)) + 2.0 * np.eye(3)[labels]
    >>> mixed = logits @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]).T
    >>> scaling = smk.fit_matrix_scaling(mixed, labels)
    >>> bool(smk.negative_log_likelihood(scaling(mixed), labels, from_logits=True)
    ...      < smk.negative_log_likelihood(mixed, labels, from_logits=True))
    True
    """
    penalty = check_real("l2_off_diagonal", l2_off_diagonal, low=0, finite=True)
    bias_penalty = check_real("l2_bias", l2_bias, low=0, finite=True)
    data, temperature = _common(logits, labels, axis, weight, ignore_index, max_iter, "matrix")
    nll = _AffineNLL(data, temperature)
    # The penalty is on W = W' / T, W' the matrix of the scaled logits the fit sees.
    penalty /= temperature * temperature
    n_classes = data.n_classes
    z = nll.logits
    off_diagonal = 1.0 - np.eye(n_classes)

    def objective(theta):
        weight_matrix = theta[: n_classes * n_classes].reshape(n_classes, n_classes)
        bias = theta[n_classes * n_classes :]
        loss, residual = nll.loss_and_residual(z @ weight_matrix.T + bias)
        weight_gradient = residual.T @ z
        bias_gradient = residual.sum(axis=0)
        if penalty:
            off = weight_matrix * off_diagonal
            loss += penalty * float(np.sum(off * off))
            weight_gradient += 2.0 * penalty * off
        if bias_penalty:
            loss += bias_penalty * float(np.dot(bias, bias))
            bias_gradient = bias_gradient + 2.0 * bias_penalty * bias
        return loss, np.concatenate([weight_gradient.ravel(), bias_gradient])

    start = np.concatenate([np.eye(n_classes).ravel(), np.zeros(n_classes)])
    result = _run_lbfgs(objective, start, max_iter, "matrix")
    weight_matrix = result.x[: n_classes * n_classes].reshape(n_classes, n_classes).copy()
    bias = result.x[n_classes * n_classes :].copy()
    loss = nll.loss_and_residual(z @ weight_matrix.T + bias)[0]
    return MatrixScaling(
        weight_matrix / temperature, bias, axis=data.axis, nll=loss, n_iter=int(result.nit)
    )
