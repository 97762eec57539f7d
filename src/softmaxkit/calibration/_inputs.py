"""The inputs of calibration: logits or probabilities, labels and weights, checked (internal).

Every calibration function works on a host NumPy copy in float64 of its inputs:
the results are a few numbers (a temperature, a metric) or small parameter arrays,
so nothing is gained by computing them on the input's library, and float64 keeps
the fits exact to their tolerance for float16/float32 logits too. Arrays of any
supported library are brought over by :func:`to_numpy`.

Labels follow :func:`softmaxkit.cross_entropy`: an integer dtype holds class
indices (the shape of the logits without the class axis), a floating dtype holds
class probabilities (the shape of the logits).
"""

from __future__ import annotations

import math

import numpy as np

from .._lib._library import Library, library_of
from .._lib._validation import class_axis

__all__ = [
    "CalibrationWarning",
    "to_numpy",
    "Labelled",
    "labelled",
    "check_bounds",
    "check_finite_logits",
    "check_class_count",
    "check_parameter_shapes",
]


class CalibrationWarning(UserWarning):
    """A calibration fit that returned a bound or did not converge; the message says why."""


def to_numpy(x, name):
    """``x`` (an array of any supported library, a list, a number) as a host NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    library = library_of(x)
    if library is Library.TORCH:
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.element_size() < 4:
            x = x.float()  # NumPy has no bfloat16
        return x.numpy()
    if library is Library.CUPY:
        return x.get()
    if library is Library.DASK:
        return np.asarray(x.compute())
    if hasattr(x, "numpy") and library is Library.TENSORFLOW:
        return np.asarray(x.numpy())
    try:
        array = np.asarray(x)
    except (TypeError, ValueError, RuntimeError):
        try:
            array = np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, AttributeError, BufferError):
            raise TypeError(
                f"{name} must be an array (NumPy, PyTorch, JAX, CuPy, Dask, TensorFlow, "
                f"array_api_strict), a list or a number, got {type(x).__name__}"
            ) from None
    if array.dtype == object:
        raise TypeError(f"{name} must hold numbers, got an array of Python objects")
    return array


def _real_float64(array, name):
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    if kind not in "biuf" and array.dtype.name != "bfloat16" and not array.dtype.name.startswith(
        "float8"
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return np.asarray(array, dtype=np.float64)


def _first_bad(values, bad):
    return values[bad].ravel()[0].item()


def check_bounds(bounds):
    """The temperature bounds of a fit, ``(low, high)`` with ``0 < low < high < inf``."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (low, high) of numbers, got {bounds!r}") from None
    if not (0 < low < high < math.inf):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got ({low!r}, {high!r})")
    return low, high


def check_finite_logits(data, method):
    """Raise unless every logit of ``data`` is finite (vector and matrix scaling)."""
    if not np.isfinite(data.values).all():
        raise ValueError(
            f"logits must be finite for {method} scaling (-inf classes are not supported: "
            "use fit_temperature)"
        )


def check_class_count(z, axis, n_classes, name):
    """Raise unless ``z`` has the ``n_classes`` classes that ``name`` was fitted on."""
    if z.shape[axis] != n_classes:
        raise ValueError(
            f"logits must have {n_classes} classes along axis {axis} (those {name} was "
            f"fitted on), got {z.shape[axis]}"
        )


def check_parameter_shapes(name, scale, bias, *, matrix):
    """Raise unless a fitted ``scale`` (1-D, or ``(classes, classes)`` for a
    ``matrix``) and ``bias`` (1-D) have one entry (row) per class."""
    if matrix and (bias.ndim != 1 or scale.shape != bias.shape * 2):
        raise ValueError(
            f"{name} must be (classes, classes) and bias (classes,), got shapes "
            f"{scale.shape} and {bias.shape}"
        )
    if not matrix and (scale.ndim != 1 or bias.shape != scale.shape):
        raise ValueError(
            f"{name} and bias must be 1-D arrays of one entry per class, got shapes "
            f"{scale.shape} and {bias.shape}"
        )


class Labelled:
    """Scores and labels as rows: ``values`` (rows, classes) float64, and the labels.

    ``index`` holds the class index of each row (or None), ``target`` the class
    probabilities of each row (or None); ``weight`` is each row's weight divided by
    their sum (0 for ignored rows); ``shape`` and ``axis`` are those of the input.
    """

    def __init__(self, values, index, target, weight, shape, axis):
        self.values, self.index, self.target, self.weight = values, index, target, weight
        self.shape, self.axis = shape, axis

    @property
    def n_classes(self):
        return self.values.shape[1]

    def one_hot(self):
        """The target probabilities, one-hot rows for class indices (zeros if ignored)."""
        if self.target is not None:
            return self.target
        onehot = np.zeros_like(self.values)
        active = self.index >= 0
        onehot[np.flatnonzero(active), self.index[active]] = 1.0
        return onehot


def sum_tolerance(dtype):
    """How far from 1 a row of probabilities of ``dtype`` may sum (in float64).

    Rounding each probability to ``dtype`` moves the sum by at most half an ulp of
    1 in total, so a few ulp are plenty; values written with four or more decimals
    pass too.
    """
    eps = float(np.finfo(dtype).eps) if np.dtype(dtype).kind == "f" else 0.0
    return max(1e-4, 4 * eps)


def check_probabilities(values, dtype, name, hint):
    """Raise unless the rows of ``values`` are probability vectors."""
    bad = ~((values >= 0) & (values <= 1))
    if bad.any():
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]{hint}, got {_first_bad(values, bad)!r}"
        )
    tolerance = sum_tolerance(dtype)
    sums = values.sum(axis=1)
    off = np.abs(sums - 1) > tolerance
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"the rows of {name} must sum to 1 (within {tolerance:g}){hint}: row {row} "
            f"sums to {sums[row]!r}"
        )


def labelled(
    scores,
    labels,
    *,
    axis,
    weight=None,
    ignore_index=None,
    scores_name="logits",
    from_logits=True,
):
    """``scores`` and ``labels`` checked and laid out as rows (a :class:`Labelled`).

    With ``from_logits`` the scores are logits: NaN and ``+inf`` are refused, ``-inf``
    (a class that takes no part) is kept. Otherwise they are probabilities: in
    [0, 1], each row summing to 1.
    """
    array = to_numpy(scores, scores_name)
    dtype = array.dtype
    values = _real_float64(array, scores_name)
    shape = values.shape
    axis = class_axis(axis, values.ndim, scores_name)
    values = np.moveaxis(values, axis, -1).reshape(-1, shape[axis])
    n_rows, n_classes = values.shape
    if n_rows == 0:
        raise ValueError(f"{scores_name} is empty: it has no rows (shape {shape})")
    if n_classes < 2:
        raise ValueError(
            f"{scores_name} must have at least 2 classes along axis {axis}, got {n_classes}"
        )
    if from_logits:
        bad = np.isnan(values) | (values == np.inf)
        if bad.any():
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(
                f"{scores_name} must be finite or -inf, got {_first_bad(values, bad)!r} in "
                f"row {row}"
            )
    else:
        check_probabilities(values, dtype, scores_name, " (pass from_logits=True for logits)")

    batch_shape = shape[:axis] + shape[axis + 1 :]
    label_array = to_numpy(labels, "labels")
    kind = label_array.dtype.kind
    index = target = None
    if kind in "iu":
        if label_array.shape != batch_shape:
            raise ValueError(
                f"labels of integer dtype hold class indices and must have the shape of "
                f"{scores_name} without the class axis {axis}, {batch_shape}; got "
                f"{label_array.shape}"
            )
        index = label_array.reshape(-1).astype(np.int64)
        active = np.ones(n_rows, dtype=bool) if ignore_index is None else index != ignore_index
        bad = active & ((index < 0) | (index >= n_classes))
        if bad.any():
            also = "" if ignore_index is None else f" or ignore_index={ignore_index}"
            raise ValueError(
                f"labels must hold class indices in [0, {n_classes}){also}, got "
                f"{_first_bad(index, bad)!r}"
            )
        if not active.any():
            raise ValueError(f"labels: every label is ignored (ignore_index={ignore_index})")
        index = np.where(active, index, -1)
    elif kind == "f" or label_array.dtype.name == "bfloat16":
        if label_array.shape != shape:
            raise ValueError(
                f"labels of floating dtype hold class probabilities and must have the shape "
                f"of {scores_name} {shape}; got {label_array.shape} (class indices need an "
                f"integer dtype and shape {batch_shape})"
            )
        target = np.moveaxis(np.asarray(label_array, dtype=np.float64), axis, -1)
        target = target.reshape(n_rows, n_classes)
        check_probabilities(
            target, label_array.dtype, "labels", " (class indices need an integer dtype)"
        )
        # Exactly 1, so that the loss is unchanged by adding a constant to a row.
        target = target / target.sum(axis=1, keepdims=True)
        active = np.ones(n_rows, dtype=bool)
    else:
        raise TypeError(
            f"labels must hold integer class indices or floating class probabilities, got "
            f"dtype {label_array.dtype}"
        )

    if weight is None:
        row_weight = active.astype(np.float64)
    else:
        row_weight = _real_float64(to_numpy(weight, "weight"), "weight")
        if row_weight.shape != batch_shape:
            raise ValueError(
                f"weight must have one entry per sample, the shape of {scores_name} without "
                f"the class axis {batch_shape}; got {row_weight.shape}"
            )
        row_weight = row_weight.reshape(-1)
        bad = ~((row_weight >= 0) & (row_weight < np.inf))
        if bad.any():
            raise ValueError(
                f"weight must be finite and >= 0, got {_first_bad(row_weight, bad)!r}"
            )
        row_weight = np.where(active, row_weight, 0.0)
    total = row_weight.sum()
    if not total > 0:
        raise ValueError("weight: every sample that takes part has weight 0")
    return Labelled(values, index, target, row_weight / total, shape, axis)
