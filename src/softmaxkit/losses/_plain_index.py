"""The plain cross-entropy call, without the general machinery (internal).

``cross_entropy(logits, target)`` with class-index targets and nothing else but
``ignore_index``, ``reduction`` and (for float32 logits) ``label_smoothing``, on a 2-D
float32 or float64 NumPy array (rows, classes) or the NumPy view of a CPU tensor, is
the most common call of the losses, and most calls are small: for a (64, 1000) batch
the validated call of :class:`~softmaxkit.losses._class_loss._ClassLoss` and its
blocks cost several times the kernel's own run. This module computes the same numbers
as the kernel's fused block of :mod:`._numpy_blocks` (the same operations in the same
order, but for the sums, compensated or exact here) without a NumPy operation per step.

It takes the call only when every argument is of the plain kind and every target is
in range; anything else, and every row the kernel reports as not finite, returns
NotImplemented, and the general path (which defines the semantics and the error
messages) runs instead. The work is one call of the kernel's entry
(``_kernels/kernel_plain_loss.c``).
"""

from __future__ import annotations

import numpy as np

from .. import _kernels

__all__ = ["plain_options", "row_losses"]

_REDUCTIONS = ("mean", "sum", "none")


def plain_options(
    axis, weight, ignore_index, label_smoothing, reduction, temperature, where, z_loss, softcap
):
    """Whether the options are the plain ones: no weight, temperature, mask, z_loss or
    softcap; label smoothing in [0, 1]. Cheap: no array is read."""
    return (
        weight is None
        and where is None
        and softcap is None
        and type(axis) is int
        and type(ignore_index) is int
        and type(label_smoothing) in (int, float)
        and 0 <= label_smoothing <= 1
        and type(temperature) in (int, float)
        and temperature == 1
        and type(z_loss) in (int, float)
        and z_loss == 0
        and reduction in _REDUCTIONS
    )


_REDUCTION_CODES = {"mean": 0, "sum": 1, "none": 2}
_INT64 = (-(2**63), 2**63 - 1)


def row_losses(values, target, ignore_index, reduction, want_grad, smoothing=0.0, bits=False):
    """``(loss, grad)`` of the plain call on NumPy arrays, or NotImplemented.

    ``values`` is a 2-D float32 or float64 array (rows, classes), ``target`` a 1-D
    signed integer array of one class index per row. ``loss`` is a 0-d array
    (``"mean"``, ``"sum"``) or one loss per row (``"none"``), in the dtype of
    ``values``; ``grad``, with ``want_grad``, the gradient of the loss (of its sum for
    ``"none"``), else None. ``smoothing`` is the label smoothing, taken with float32
    logits only. With ``bits``, ``values`` holds bfloat16 logits as their bits (an int16
    view, as torch gives them): the gradient is so too, the loss float32. One call of
    the kernel's entry does the work (``kernel_plain_loss.c``).
    """
    if bits:
        if not (
            type(values) is np.ndarray
            and values.ndim == 2
            and values.dtype == np.int16
            and _kernels._kernel is not None
            and not _kernels._forced_generic[0]
        ):
            return NotImplemented
    elif not _kernels._takes_float_matrix(values):
        return NotImplemented
    n_rows, n_classes = values.shape
    if (
        type(target) is not np.ndarray
        or target.shape != (n_rows,)
        or target.dtype.kind != "i"
        or not target.dtype.isnative
        or not values.dtype.isnative
        or n_rows == 0
        or n_classes == 0
        or not _INT64[0] <= ignore_index <= _INT64[1]
        or not values.flags.aligned
        or (n_classes > 1 and values.strides[1] != values.itemsize)
        or (smoothing and values.dtype == np.float64)
    ):
        return NotImplemented
    out = np.empty_like(values) if want_grad else None
    per_row = np.empty(n_rows) if reduction == "none" else None
    total = _kernels._kernel.plain_cross_entropy(
        values, target, ignore_index, _REDUCTION_CODES[reduction], out, per_row,
        _kernels._setting[0], float(smoothing), 3 if bits else -1,
    )  # fmt: skip
    if total is NotImplemented:
        return NotImplemented
    loss_dtype = np.float32 if bits else values.dtype
    if per_row is not None:
        return per_row.astype(loss_dtype), out
    return np.asarray(loss_dtype.type(total) if not bits else np.float32(total)), out
