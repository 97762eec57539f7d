"""The arguments of the class losses: targets, class weights, options; the inputs of
:func:`~softmaxkit.linear_cross_entropy`; the ``_overflow_is_inf`` convention of every
loss."""

from __future__ import annotations

import functools
import math

import numpy as np

from .._lib._dtypes import _kind, _name
from .._lib._namespace import (
    as_array,
    device_of,
    is_lazy,
    is_numpy_namespace,
)
from .._lib._validation import check_real


def _overflow_is_inf(function):
    """``function`` with NumPy's overflow warning off.

    A loss or gradient beyond the dtype's range (a temperature near 0, logits or
    weights near the largest float) is the honest ``inf``, on NumPy and on libraries
    that compute with it (array_api_strict). No NaN is made, so no warning is hidden.
    """

    @functools.wraps(function)
    def without_overflow_warning(*args, **kwargs):
        with np.errstate(over="ignore"):
            return function(*args, **kwargs)

    return without_overflow_warning


def _any_known(xp, bad):
    """Whether ``bad`` holds anywhere, when its values are known (not under a JAX trace)."""
    found = xp.any(bad)
    return not is_lazy(found) and bool(found)


def _first_value(xp, array, bad):
    """The first entry of ``array`` where ``bad`` holds, as a Python number (for messages)."""
    if hasattr(array, "detach"):
        array, bad = array.detach().cpu(), bad.detach().cpu()
    values = np.asarray(array)[np.asarray(bad)]
    value = values.ravel()[0]
    return value.item() if hasattr(value, "item") else value


def _check_weight(xp, weight, n_classes, like, dtype):
    weight = as_array(xp, weight, like=like, dtype=dtype)
    if tuple(weight.shape) != (n_classes,):
        raise ValueError(
            f"weight must be a 1-D array with one entry per class ({n_classes}), "
            f"got shape {tuple(weight.shape)}"
        )
    if not is_lazy(weight):
        bad = ~((weight >= 0) & (weight < math.inf))
        if _any_known(xp, bad):
            raise ValueError(
                f"weight must be finite and >= 0, got {_first_value(xp, weight, bad)!r}"
            )
    return weight


def _check_nonnegative(args, value, name):
    """``value`` as an operand of the elementwise loss ``args``, every entry >= 0."""
    array = args.operand(value, name)
    xp = args.xp
    if not is_lazy(array):
        bad = ~(array >= 0)
        if _any_known(xp, bad):
            raise ValueError(f"{name} must be >= 0, got {_first_value(xp, array, bad)!r}")
    return array


def _check_probabilities(xp, p):
    """Raise unless every known entry of ``probs`` is in [0, 1]."""
    if not is_lazy(p):
        bad = ~((p >= 0) & (p <= 1))
        if _any_known(xp, bad):
            raise ValueError(f"probs must be in [0, 1], got {_first_value(xp, p, bad)!r}")


class _Targets:
    """The target of a class loss: indices (``is_index``) or probabilities."""

    __slots__ = ("array", "is_index")

    def __init__(self, array, is_index):
        self.array = array
        self.is_index = is_index


_NUMPY_INDEX = np.dtype(np.intp)


def _index_dtype(xp, like):
    """The library's default index dtype (int64; int32 for JAX without 64-bit types)."""
    if isinstance(like, np.ndarray) and is_numpy_namespace(xp):
        return _NUMPY_INDEX  # NumPy's, on every device it has
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=device_of(xp, like))["indexing"]
        except Exception:  # libraries whose info() does not take a device
            pass
    return xp.int64


def _as_index(xp, target, ignore_index, n_classes):
    """Integer class indices in the library's index dtype.

    The indexing functions of PyTorch take int64 indices only, and comparing an
    unsigned target with a negative ``ignore_index`` wraps the latter around in
    PyTorch and JAX (uint8 156 equals -100 there). Every index dtype holds every
    valid class index; larger unsigned values are out of range, reported before the
    conversion could wrap them to negative numbers.
    """
    index_dtype = _index_dtype(xp, target)
    if target.dtype == index_dtype:
        return target
    largest = xp.iinfo(index_dtype).max
    if not is_lazy(target) and xp.iinfo(target.dtype).max > largest:
        bad = target > largest
        if _any_known(xp, bad):
            raise ValueError(
                f"target must hold class indices in [0, {n_classes}) or "
                f"ignore_index={ignore_index}, got {_first_value(xp, target, bad)!r}"
            )
    return xp.astype(target, index_dtype)


def _check_target(xp, target, x, axis, ignore_index, like):
    target = as_array(xp, target, like=like)
    kind = _kind(xp, target.dtype)
    shape = tuple(x.shape)
    batch_shape = shape[:axis] + shape[axis + 1 :]
    if kind == "integral":
        if tuple(target.shape) != batch_shape:
            raise ValueError(
                f"target of integer dtype holds class indices and must have the shape of the "
                f"logits without the class axis {axis}, {batch_shape}; got {tuple(target.shape)}"
            )
        n_classes = shape[axis]
        target = _as_index(xp, target, ignore_index, n_classes)
        if not is_lazy(target):
            bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
            if _any_known(xp, bad):
                raise ValueError(
                    f"target must hold class indices in [0, {n_classes}) or "
                    f"ignore_index={ignore_index}, got {_first_value(xp, target, bad)!r}"
                )
        return _Targets(target, True)
    if kind in ("real", "half"):
        if tuple(target.shape) != shape:
            raise ValueError(
                f"target of floating dtype holds class probabilities and must have the shape "
                f"of the logits {shape}; got {tuple(target.shape)} (class indices need an "
                f"integer dtype and shape {batch_shape})"
            )
        return _Targets(target, False)
    raise TypeError(
        f"target must hold integer class indices or floating class probabilities, "
        f"got dtype {_name(target.dtype)}"
    )


def _check_options(z_loss, softcap):
    """The options of :func:`cross_entropy` beyond those of :class:`._class_loss._ClassLoss`."""
    check_real("z_loss", z_loss, low=0.0, finite=True)
    if softcap is not None:
        check_real("softcap", softcap, low=0.0, low_open=True)


def _check_linear_head(xp, hidden, weight, bias, target, ignore_index):
    """The shapes of :func:`~softmaxkit.linear_cross_entropy`'s arrays and its class
    indices; the target in the library's index dtype."""
    if hidden.ndim < 1:
        raise ValueError("hidden must have shape (..., D), got a 0-d array")
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (V, D), got shape {tuple(weight.shape)}")
    if hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"hidden's last axis ({hidden.shape[-1]}) must match weight's second axis "
            f"({weight.shape[1]})"
        )
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"target of shape {tuple(target.shape)} must have hidden's shape without its "
            f"last axis, {tuple(hidden.shape[:-1])}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    kind = np.dtype(_name(target.dtype)).kind if _name(target.dtype) != "bool" else "b"
    if kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    vocabulary = weight.shape[0]
    target = _as_index(xp, target, ignore_index, vocabulary)
    bad = (target != ignore_index) & ((target < 0) | (target >= vocabulary))
    if bool(xp.any(bad)):
        raise ValueError(
            f"target holds class indices outside [0, {vocabulary}) that are not "
            f"ignore_index ({ignore_index})"
        )
    return target
