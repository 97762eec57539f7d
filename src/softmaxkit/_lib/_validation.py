"""Argument checks: the one place where softmaxkit's argument errors are written.

Each check raises an error that names the argument and the value it got, before any
work is dispatched; the command line reuses them, so that ``softmax --top-p 2`` and
``smk.sample(x, top_p=2)`` say the same thing. The dtype rules (``_dtypes.py``) and the
mixing of array libraries (``_namespace.py``) raise their own errors, from the same
layer.

- scalar options (written in ``_scalar_checks.py``, imported from here):
  :func:`check_real`, :func:`check_int`, :func:`check_positive_int`,
  :func:`check_fraction`, :func:`check_flag`, :func:`check_choice`,
  :func:`check_reduction`, :func:`check_scalar_temperature`, :func:`check_instance`;
- array arguments: :func:`normalize_axis`, :func:`single_axis`, :func:`class_axis`,
  :func:`check_ndim`, :func:`check_temperature`,
  :func:`broadcast_mask`, :func:`broadcast_operand`, :func:`check_real_operand`,
  :func:`check_boolean_array`, :func:`check_same_shape`;
- results: :func:`check_out` (the ``out=`` contract of the NumPy paths) and
  :func:`check_out_for` (a result computed elsewhere, copied into ``out``);
  :func:`check_tensor_out` (that of the CPU tensor path).
"""

from __future__ import annotations

import numbers
import operator

import array_api_compat
import numpy as np

from ._dtypes import _kind, _name
from ._namespace import as_array, is_lazy
from ._scalar_checks import (
    check_choice,
    check_flag,
    check_fraction,
    check_instance,
    check_int,
    check_positive_int,
    check_real,
    check_reduction,
    check_scalar_temperature,
)

__all__ = [
    "check_real",
    "check_int",
    "check_positive_int",
    "check_fraction",
    "check_flag",
    "check_choice",
    "check_instance",
    "check_reduction",
    "check_out",
    "check_out_for",
    "check_tensor_out",
    "normalize_axis",
    "single_axis",
    "class_axis",
    "check_ndim",
    "check_scalar_temperature",
    "check_temperature",
    "check_real_operand",
    "broadcast_mask",
    "broadcast_operand",
    "check_boolean_array",
    "check_same_shape",
]

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover - older NumPy
    AxisError = np.AxisError


def check_out(out, shape, dtype):
    """Raise unless ``out`` can receive a NumPy result of ``shape`` and ``dtype``.

    A wrong shape is a ValueError (as NumPy's ufuncs say it), a wrong type or dtype a
    TypeError.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, the result has dtype {np.dtype(dtype)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def check_out_for(out, result):
    """Raise unless ``result`` is a NumPy array that ``out`` can receive.

    Parameters
    ----------
    out : numpy.ndarray
        The ``out=`` argument.
    result : array
        The result computed without ``out``, to be copied into it.

    Raises
    ------
    TypeError
        ``out= is only supported for NumPy results, got a result of type ...``, or
        as :func:`check_out` says.
    ValueError
        As :func:`check_out` says.
    """
    if not isinstance(result, np.ndarray):
        raise TypeError(
            "out= is only supported for NumPy results, got a result of type "
            f"{type(result).__module__}.{type(result).__name__}"
        )
    check_out(out, result.shape, result.dtype)


def check_tensor_out(out, shape, dtype):
    """Raise unless ``out`` can receive a CPU tensor result of ``shape`` and ``dtype``.

    The compiled kernel writes ``out`` in place: a strided CPU tensor that is not a
    functorch wrapper and needs no gradient. A wrong shape is a ValueError, anything
    else a TypeError (as :func:`check_out`). Only called on PyTorch input, so PyTorch
    is imported.

    Parameters
    ----------
    out : torch.Tensor
        The ``out=`` argument.
    shape : tuple of int
        The result's shape.
    dtype : torch.dtype
        The result's dtype.
    """
    import torch

    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor for tensor input, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}, the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, the result has dtype {dtype}")
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor(out)
    if not out.is_cpu or out.layout is not torch.strided or wrapped:
        raise TypeError("out must be a strided CPU tensor for CPU tensor input")
    if out.requires_grad:
        raise TypeError("out must not require a gradient")


def normalize_axis(axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints or None) as a sorted tuple of non-negative ints.

    A 0-d array has no axis: it is normalized by itself, whatever ``axis`` says, as
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


def single_axis(axis, ndim: int) -> int:
    """One axis of an array of ``ndim`` dimensions, as a non-negative int.

    Parameters
    ----------
    axis : int
        The axis; a negative one counts from the end. A bool, a float, a tuple or
        None is refused.
    ndim : int
        The number of dimensions of the array.

    Returns
    -------
    int
        ``axis`` in ``range(ndim)`` (0 for a 0-d array, as :func:`normalize_axis`
        takes -1 and 0 there).

    Raises
    ------
    TypeError
        ``axis must be an int, got {axis!r}``.
    ValueError
        An ``AxisError``: ``axis {axis} is out of bounds for an array of dimension
        {ndim}``.
    """
    normalized = normalize_axis(check_int("axis", axis), ndim)
    return normalized[0] if normalized else 0  # a 0-d array: -1 and 0 name no axis


def check_ndim(name, array, minimum: int, what: str):
    """``array`` if it has at least ``minimum`` dimensions, else a ValueError.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    array : array
        An array of any supported library.
    minimum : int
        The fewest dimensions allowed.
    what : str
        What the dimensions hold (``"the classes"``), added in parentheses.

    Returns
    -------
    array
        ``array``.

    Raises
    ------
    ValueError
        ``{name} must have at least one dimension ({what}), got shape ()``.
    """
    if array.ndim < minimum:
        count = {1: "one dimension", 2: "two dimensions"}.get(minimum, f"{minimum} dimensions")
        raise ValueError(
            f"{name} must have at least {count} ({what}), got shape {tuple(array.shape)}"
        )
    return array


def class_axis(axis, ndim: int, name: str) -> int:
    """The class axis of a loss or a calibration input, as a non-negative int.

    Parameters
    ----------
    axis : int
        The class axis; a tuple, a list or None is refused.
    ndim : int
        The number of dimensions of the argument ``name``.
    name : str
        The argument holding the classes (``x``, ``logits``...), for the message.

    Returns
    -------
    int
        ``axis`` in ``range(ndim)``.

    Raises
    ------
    ValueError
        ``{name} must have a class axis, got a 0-d array``; an ``AxisError`` (a
        ValueError) for an axis out of bounds.
    TypeError
        ``axis must be a single int (the class axis), got {axis!r}``.
    """
    if ndim == 0:
        raise ValueError(f"{name} must have a class axis, got a 0-d array")
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"axis must be a single int (the class axis), got {axis!r}")
    return normalize_axis(axis, ndim)[0]


def check_temperature(xp, temperature, x, axes, work_dtype):
    """Validate ``temperature``; return it as a Python float or an array of ``xp``.

    A scalar must be >= 0 and not NaN (``inf`` is allowed). An array must broadcast
    to ``x`` with length 1 along every normalized axis (one temperature per row).
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
                f"temperature of shape {shape} must have length 1 along the normalized "
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


def check_same_shape(name, array, other_name, other):
    """``array`` if it has the shape of ``other``, else a ValueError naming both.

    Parameters
    ----------
    name, other_name : str
        The arguments' names, for the message.
    array, other : array
        Arrays of any supported library.

    Returns
    -------
    array
        ``array``.

    Raises
    ------
    ValueError
        ``{name} of shape {shape} must have the shape of {other_name}, {other shape}``.
    """
    if tuple(array.shape) != tuple(other.shape):
        raise ValueError(
            f"{name} of shape {tuple(array.shape)} must have the shape of {other_name}, "
            f"{tuple(other.shape)}"
        )
    return array


def check_boolean_array(name, array, meaning=None):
    """``array`` if its dtype is bool, else a TypeError naming ``name`` and the dtype.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    array : array
        An array of any supported library.
    meaning : str, optional
        What True says (``"True = attend"``), added to the message in parentheses.

    Returns
    -------
    array
        ``array``.

    Raises
    ------
    TypeError
        ``{name} must be a boolean array ({meaning}), got dtype {array.dtype}``.
    """
    if getattr(array.dtype, "name", str(array.dtype)).rsplit(".", 1)[-1] != "bool":
        note = f" ({meaning})" if meaning else ""
        raise TypeError(f"{name} must be a boolean array{note}, got dtype {array.dtype}")
    return array


def broadcast_mask(xp, where, x):
    """``where`` as a boolean keep-mask of ``x``'s shape."""
    array = check_boolean_array("where", as_array(xp, where, like=x))
    return broadcast_operand(xp, array, x, "where")
