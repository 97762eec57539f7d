"""The arguments of the Fenchel-Young losses: the class axis, the targets and the class
weights, checked before any work."""

from __future__ import annotations

import numpy as np

from .._lib._dtypes import _name
from .._lib._namespace import as_array, is_lazy
from .._lib._validation import check_int, class_axis


def _is_integer_dtype(xp, a) -> bool:
    try:
        return bool(xp.isdtype(a.dtype, "integral"))
    except (AttributeError, TypeError, ValueError):
        return np.dtype(_name(a.dtype)).kind in "iu"


def _check_loss_inputs(xp, source, target, axis, weight, ignore_index):
    """``(class_axis, target)``: the class axis of ``source`` and the target as an array
    of class indices of the batch shape, every one in range or ``ignore_index``; a
    ``weight`` must hold one entry per class."""
    axis = class_axis(check_int("axis", axis), source.ndim, "x")
    target = as_array(xp, target, like=source)
    expected = tuple(source.shape[:axis]) + tuple(source.shape[axis + 1 :])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target of shape {tuple(target.shape)} must have the shape of x without the "
            f"class axis {axis}, {expected}"
        )
    if not _is_integer_dtype(xp, target):
        raise TypeError(f"target must hold class indices (integers), got dtype {target.dtype}")
    n_classes = source.shape[axis]
    if not is_lazy(target):
        valid = target != ignore_index
        out_of_range = valid & ((target < 0) | (target >= n_classes))
        if bool(xp.any(out_of_range)):
            raise ValueError(f"target must be in [0, {n_classes}) or ignore_index ({ignore_index})")
    if weight is not None:
        shape = tuple(as_array(xp, weight, like=source).shape)
        if shape != (n_classes,):
            raise ValueError(f"weight must have shape ({n_classes},) (one per class), got {shape}")
    return axis, target
