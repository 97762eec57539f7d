"""Argument checks shared by every public function.

Each check raises an error that names the argument and the value it got.
"""

from __future__ import annotations

import math
import numbers
import operator

import array_api_compat
import numpy as np

from ._dtypes import _kind, _name
from ._namespace import as_array, is_lazy

__all__ = [
    "normalize_axis",
    "check_scalar_temperature",
    "check_temperature",
    "check_real_operand",
    "broadcast_mask",
    "broadcast_operand",
]

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover - older NumPy
    AxisError = np.AxisError


def normalize_axis(axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints or None) as a sorted tuple of non-negative ints.

    A 0-d array has no axis: it is normalised by itself, whatever ``axis`` says, as
    long as ``axis`` is -1, 0, None or ().
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        items = tuple(axis)
    else:
        items = (axis,)
    normalized = []
    for item in items:
        try:
            index = operator.index(item)
        except TypeError:
            raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}") from None
        if ndim == 0 and index in (-1, 0):
            continue
        if not -ndim <= index < ndim:
            raise AxisError(f"axis {index} is out of bounds for an array of dimension {ndim}")
        normalized.append(index % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"axis contains a repeated entry: {axis!r}")
    return tuple(sorted(normalized))


def check_scalar_temperature(temperature) -> float:
    """A scalar temperature as a float: >= 0 and not NaN (``inf`` is allowed)."""
    value = float(temperature)
    if math.isnan(value) or value < 0:
        raise ValueError(f"temperature must be >= 0, got {value!r}")
    return value


def check_temperature(xp, temperature, x, axes, work_dtype):
    """Validate ``temperature``; return it as a Python float or an array of ``xp``.

    A scalar must be >= 0 and not NaN (``inf`` is allowed). An array must broadcast
    to ``x`` with length 1 along every normalised axis (one temperature per row).
    """
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        return check_scalar_temperature(temperature)
    if isinstance(temperature, bool) or temperature is None:
        raise TypeError(f"temperature must be a number or an array, got {temperature!r}")
    shape = getattr(temperature, "shape", None)
    if shape is not None and len(shape) == 0 and not is_lazy(temperature):
        try:
            return check_temperature(xp, float(temperature), x, axes, work_dtype)
        except TypeError:
            pass
    try:
        # A temperature beyond the working dtype's range becomes 0 or inf there, the
        # limits the row takes anyway (NumPy, and JAX through it, would warn).
        with np.errstate(over="ignore", under="ignore"):
            array = as_array(xp, temperature, like=x, dtype=work_dtype)
    except Exception as error:
        raise TypeError(
            f"temperature must be a number or an array of x's library, got {type(temperature)!r}"
        ) from error
    shape = tuple(array.shape)
    if len(shape) > x.ndim:
        raise ValueError(
            f"temperature of shape {shape} has more dimensions than x of shape {tuple(x.shape)}"
        )
    padded = (1,) * (x.ndim - len(shape)) + shape
    for dim, (t_len, x_len) in enumerate(zip(padded, x.shape)):
        if dim in axes and t_len != 1:
            raise ValueError(
                f"temperature of shape {shape} must have length 1 along the normalised "
                f"axis {dim} (one temperature per row), for x of shape {tuple(x.shape)}"
            )
        if t_len not in (1, x_len):
            raise ValueError(
                f"temperature of shape {shape} does not broadcast to x of shape {tuple(x.shape)}"
            )
    if not is_lazy(array):
        bad = xp.isnan(array) | (array < 0)
        if bool(xp.any(bad)):
            _raise_bad_temperature(_to_numpy(array))
    elif array_api_compat.is_dask_array(array):
        # Checked when computed: every result of the row depends on its temperature,
        # so no number comes out of a bad one.
        array = array.map_blocks(_checked_temperature_block, dtype=array.dtype)
    return xp.reshape(array, padded)


def _raise_bad_temperature(values):
    flat = np.asarray(values, dtype=np.float64).ravel()
    first = flat[np.isnan(flat) | (flat < 0)][0]
    raise ValueError(f"temperature must be >= 0, got {float(first)!r}")


def _checked_temperature_block(block):
    values = np.asarray(block)
    if np.any(np.isnan(values) | (values < 0)):
        _raise_bad_temperature(values)
    return block


def _to_numpy(array):
    if hasattr(array, "detach"):
        array = array.detach()
    if hasattr(array, "cpu"):
        array = array.cpu()
    if hasattr(array, "numpy"):
        return array.numpy()
    return np.asarray(array)


def check_real_operand(xp, array, name: str):
    """Raise a TypeError naming ``name`` unless ``array`` has a real numeric dtype
    (bool, integer or real floating): a cast would drop an imaginary part or fail."""
    if _kind(xp, array.dtype) in ("complex", "other"):
        raise TypeError(f"{name} must have a real numeric dtype, got {_name(array.dtype)}")
    return array


def broadcast_operand(xp, operand, x, name: str, dtype=None):
    """``operand`` as an array of ``xp`` broadcast to ``x``'s shape, or a clear error."""
    array = as_array(xp, operand, like=x, dtype=dtype)
    try:
        return xp.broadcast_to(array, tuple(x.shape))
    except (ValueError, RuntimeError, TypeError) as error:
        raise ValueError(
            f"{name} of shape {tuple(array.shape)} does not broadcast to x of shape "
            f"{tuple(x.shape)}"
        ) from error


def broadcast_mask(xp, where, x):
    """``where`` as a boolean keep-mask of ``x``'s shape."""
    array = as_array(xp, where, like=x)
    if getattr(array.dtype, "name", str(array.dtype)).rsplit(".", 1)[-1] != "bool":
        raise TypeError(f"where must be a boolean array, got dtype {array.dtype}")
    return broadcast_operand(xp, array, x, "where")
