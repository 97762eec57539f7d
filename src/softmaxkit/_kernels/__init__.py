"""The compiled fast path for NumPy arrays (internal).

softmax and log_softmax call :data:`fast_normalise` first, and logsumexp
:data:`fast_reduce`: the extension checks the common call (a float ndarray, the last
axis, a scalar temperature) and runs it without a Python frame. Then the public
functions call :func:`normalise` or :func:`reduce`, which return ``NotImplemented``
when the input is not a plain NumPy array of a supported kind, or the options need
the generic path (``b=``, ``return_sign=``, several axes of a non-contiguous array,
``dtype=`` that changes the dtype): the generic array-API implementation then runs
and stays the reference. Invalid arguments always take the generic path, so that
every error is raised by the same code.

For tests: :func:`kernel_available`, :func:`generic_only` and ``dispatch_counts``.
"""

from __future__ import annotations

import collections.abc
import contextlib

import numpy as np

from .._threads import _setting

try:
    from . import _kernel
except ImportError:  # running from a source tree without the built extension
    _kernel = None

__all__ = [
    "kernel_available",
    "generic_only",
    "dispatch_counts",
    "simd",
    "normalise",
    "fast_normalise",
    "fast_reduce",
    "reduce",
    "deliver",
    "softmax_stats",
    "block_sums",
]

SOFTMAX, LOG_SOFTMAX, LOGSUMEXP = 0, 1, 2


class _DispatchCounts(collections.abc.MutableMapping):
    """How often each path ran: "kernel" (counted by the extension) and "generic"."""

    def __init__(self):
        self._counts = {"generic": 0}

    def __getitem__(self, key):
        if key == "kernel":
            return 0 if _kernel is None else _kernel.runs()
        return self._counts.get(key, 0)

    def __setitem__(self, key, value):
        if key == "kernel":
            raise KeyError("the kernel runs are counted by the extension")
        self._counts[key] = value

    def __delitem__(self, key):
        del self._counts[key]

    def __iter__(self):
        yield "kernel"
        yield from self._counts

    def __len__(self):
        return len(self._counts) + 1


#: How often each path ran: keys "kernel" and "generic".
dispatch_counts = _DispatchCounts()

_forced_generic = [False]


def _decline(*args):
    return NotImplemented


#: ``fast_normalise(op, x, axis, temperature, where, dtype, out)``: softmax (op 0) or
#: log_softmax (op 1) of the common call (a float ndarray, the last axis, a scalar
#: temperature, no mask), checked and run by the extension without a Python frame;
#: NotImplemented for anything else, which :func:`normalise` then plans.
fast_normalise = _decline
#: ``fast_reduce(x, axis, temperature, where, dtype, keepdims, out)``: logsumexp (without
#: ``b`` and ``return_sign``) of the common call in the same way, or NotImplemented.
fast_reduce = _decline
if _kernel is not None:
    _kernel.set_thread_setting(_setting)
    fast_normalise = _kernel.normalise
    fast_reduce = _kernel.reduce

_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2}
_SCALARS = (float, int)


def kernel_available() -> bool:
    """Whether the compiled kernels are importable."""
    return _kernel is not None


def simd() -> str | None:
    """The instruction set the kernels use ('avx2' or 'baseline'), or None."""
    return None if _kernel is None else _kernel.simd()


@contextlib.contextmanager
def generic_only():
    """Force the generic path inside the ``with`` block."""
    previous = _forced_generic[0]
    _forced_generic[0] = True
    if _kernel is not None:
        _kernel.set_generic(True)
    try:
        yield
    finally:
        _forced_generic[0] = previous
        if _kernel is not None:
            _kernel.set_generic(previous)


def _generic():
    dispatch_counts["generic"] += 1
    return NotImplemented


def _code(dt):
    code = _CODES.get(dt)
    if code is None and dt.name == "bfloat16" and dt.itemsize == 2:
        code = _CODES[dt] = 3
    return code


def check_out(out, shape, dtype):
    """Raise unless ``out`` can receive a result of ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, the result has dtype {np.dtype(dtype)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def deliver(result, out):
    """The generic path's ``result``, copied into ``out`` when one is given."""
    if out is None:
        return result
    if not isinstance(result, np.ndarray):
        raise TypeError(
            "out= is only supported for NumPy results, got a result of type "
            f"{type(result).__module__}.{type(result).__name__}"
        )
    check_out(out, result.shape, result.dtype)
    np.copyto(out, result)
    return out


def _plan(x, axis, temperature, where, dtype):
    """(x, axis, temperature value, per-row temperature or None, mask or None), or None."""
    if _kernel is None or _forced_generic[0]:
        return None
    if type(x) is not np.ndarray:
        # Python lists take the same path as the arrays they spell, so that a list
        # and its array give identical results.
        if type(x) not in (list, tuple):
            return None
        try:
            x = np.asarray(x)
        except (TypeError, ValueError):
            return None
    code = _code(x.dtype)
    converted = code is None
    if converted:
        if x.dtype.kind not in "biu" or dtype is not None:
            return None
        x = x.astype(np.float64)  # integers and bools: the default float first
        code = 1
    if dtype is not None:
        try:
            if np.dtype(dtype) != x.dtype:
                return None
        except TypeError:
            return None
    ndim = x.ndim
    if ndim == 0 or x.size == 0:
        return None
    if type(axis) is not int:
        if isinstance(axis, (tuple, list)) and len(axis) == 1 and type(axis[0]) is int:
            axis = axis[0]
        elif axis is None or (isinstance(axis, tuple) and len(axis) == ndim):
            if ndim != 1:
                if axis is not None and (
                    any(type(a) is not int or not -ndim <= a < ndim for a in axis)
                    or len({a % ndim for a in axis}) != ndim
                ):
                    return None  # the generic path raises
                if converted or where is not None or type(temperature) not in (int, float):
                    return None
                return "flatten"
            axis = 0
        else:
            return None
    if ndim > _kernel.MAX_NDIM:  # the generic path takes any number of dimensions
        return None
    if axis < 0:
        axis += ndim
    if not 0 <= axis < ndim:
        return None
    t_row = None
    if type(temperature) is float or (type(temperature) is int):
        t_value = float(temperature)
    elif isinstance(temperature, (np.generic, np.ndarray)) and np.ndim(temperature) == 0:
        if temperature.dtype.kind not in "fiu":
            return None
        t_value = float(temperature)
    elif isinstance(temperature, np.ndarray) and temperature.dtype.kind in "fiu":
        t_value = 1.0
        shape = temperature.shape
        if len(shape) > ndim:
            return None
        padded = (1,) * (ndim - len(shape)) + shape
        if padded[axis] != 1 or any(t not in (1, n) for t, n in zip(padded, x.shape, strict=True)):
            return None
        t_row = np.asarray(temperature, dtype=np.float64)
        if np.isnan(t_row).any() or (t_row < 0).any():
            return None
        target = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
        t_row = np.broadcast_to(t_row.reshape(padded), target)
    else:
        return None
    if not t_value >= 0.0:  # negative or NaN: the generic path raises
        return None
    mask = None
    if where is not None:
        if not isinstance(where, np.ndarray) or where.dtype != np.bool_:
            return None
        try:
            mask = np.broadcast_to(where, x.shape)
        except ValueError:
            return None
    if not x.flags.aligned:
        # The kernel reads x by typed loads in places: a misaligned view (np.frombuffer
        # at an odd offset, a field of a packed structured array) is copied first.
        x = x.copy(order="K")
    return x, code, axis, t_value, t_row, mask


def _moved(array, axis, ndim):
    if array is None or axis == ndim - 1:
        return array
    return np.moveaxis(array, axis, -1)


def normalise(op, x, axis, temperature, where, dtype, out):
    """softmax (op 0) or log_softmax (op 1) by the kernel, or NotImplemented.

    The common call has been tried by :data:`fast_normalise` already; this plans the
    others (lists, other axes, per-row temperatures, masks, out= that overlaps x).
    """
    plan = _plan(x, axis, temperature, where, dtype)
    if plan is None:
        return _generic()
    if plan == "flatten":
        if not x.flags.c_contiguous:
            return _generic()
        flat_out = None
        if out is not None:
            check_out(out, x.shape, x.dtype)
            if not out.flags.c_contiguous:
                return _generic()
            flat_out = out.reshape(-1)
        result = normalise(op, x.reshape(-1), -1, temperature, None, None, flat_out)
        return out if out is not None else result.reshape(x.shape)
    x, code, axis, t_value, t_row, mask = plan
    if out is not None:
        check_out(out, x.shape, x.dtype)
    # A misaligned out (the kernel stores by typed stores in places) gets a copy.
    aside = out is not None and not out.flags.aligned
    target = np.empty_like(x) if out is None or aside else out
    ndim = x.ndim

    def run_into(destination):
        return _kernel.run(
            op,
            _moved(x, axis, ndim),
            code,
            _moved(destination, axis, ndim),
            code,
            _moved(mask, axis, ndim),
            _moved(t_row, axis, ndim),
            t_value,
            None,
            _setting[0],
        )

    if not run_into(target):  # out overlaps x without being x: compute aside, then copy
        target = np.empty_like(x)
        run_into(target)
        aside = True
    if aside:
        np.copyto(out, target)
        return out
    return target


def reduce(x, axis, temperature, where, dtype, keepdims, out):
    """logsumexp (without ``b`` and ``return_sign``) by the kernel, or NotImplemented."""
    plan = _plan(x, axis, temperature, where, dtype)
    if plan is None:
        return _generic()
    if plan == "flatten":
        result = reduce(x.reshape(-1), -1, temperature, None, None, False, None)
        if result is NotImplemented:
            return result
        if keepdims:
            result = result.reshape((1,) * x.ndim)
        return deliver(result, out)
    x, code, axis, t_value, t_row, mask = plan
    ndim = x.ndim
    kept_shape = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
    result = np.empty(kept_shape, dtype=x.dtype)
    _kernel.run(
        LOGSUMEXP,
        _moved(x, axis, ndim),
        code,
        None,
        code,
        _moved(mask, axis, ndim),
        _moved(t_row, axis, ndim),
        t_value,
        _moved(result, axis, ndim),
        _setting[0],
    )
    if not keepdims:
        result = result.reshape(x.shape[:axis] + x.shape[axis + 1 :])
    return deliver(result, out)


def _takes_float_matrix(x):
    """Whether the losses' and the sampler's entries may run on ``x``: the kernel is
    there and not switched off, and ``x`` is a 2-D float32 or float64 ndarray."""
    return (
        _kernel is not None
        and not _forced_generic[0]
        and type(x) is np.ndarray
        and x.ndim == 2
        and x.dtype in (np.float32, np.float64)
    )


def softmax_stats(x, out, *, temperature=1.0, gain=None):
    """Softmax of the rows of ``x`` into ``out`` and the normaliser of each row.

    For the losses: ``x`` is a 2-D float32 or float64 NumPy array (rows, classes), with
    any strides; ``out`` a writeable array of the same shape and dtype that does not
    overlap it; ``temperature`` a scalar; ``gain`` None or a float64 array of shape
    ``(rows,)`` that multiplies each row of the result (the gradient's row factor).

    Returns ``stats``, a float64 array of shape ``(rows, 2)``: the row maximum and
    ``log(sum(exp((x - max) / temperature)))`` evaluated in the log1p form (accurate
    when the sum is close to 1), so that ``logsumexp = max / temperature + stats[:, 1]``
    and the loss at class ``t`` is ``(max - x_t) / temperature + stats[:, 1]``. Rows
    that are not finite (a NaN, a +inf, every entry -inf) have ``stats[:, 1]`` NaN; their
    ``out`` row holds the core's edge result times the gain. Returns NotImplemented
    without the kernel, or for inputs it does not take.
    """
    if (
        not _takes_float_matrix(x)
        or type(out) is not np.ndarray
        or out.shape != x.shape
        or out.dtype != x.dtype
        or not float(temperature) > 0.0
        or np.isinf(temperature)
    ):
        return NotImplemented
    code = _CODES[x.dtype]
    if not x.flags.aligned:  # see _plan
        x = x.copy()
    stats = np.empty((x.shape[0], 2), dtype=np.float64)
    if gain is not None:
        gain = np.ascontiguousarray(gain, dtype=np.float64).reshape(-1, 1)

    def run_into(destination):
        return _kernel.run(
            SOFTMAX, x, code, destination, code, None, None, float(temperature), stats,
            _setting[0], gain,
        )

    # A misaligned out, or one that overlaps x without being x: computed aside, copied.
    target = out if out.flags.aligned else np.empty_like(x)
    if not run_into(target):
        target = np.empty_like(x)
        run_into(target)
    if target is not out:
        np.copyto(out, target)
    return stats


def block_sums(x, block, *, temperature=1.0, where=None):
    """Each row's maximum and the sums of ``exp((x - max) / temperature)`` by blocks.

    For sampling by a search over blocks: ``x`` is a 2-D float32 or float64 NumPy
    array (rows, entries); ``block`` the number of entries per block; ``temperature``
    a positive finite scalar or a float64 array of one temperature per row (shape
    ``(rows,)`` or ``(rows, 1)``); ``where`` None or a boolean array broadcastable to
    ``x`` (False entries take no part). One pass for the maximum and one for the
    sums, with the accuracy of the kernel's logsumexp.

    Returns ``(stats, sums)``: ``stats`` float64 ``(rows, 2)``, the maximum and
    ``log(sum(exp((x - max) / temperature)))`` (NaN on rows that are not finite: a NaN,
    a +inf, no entry taking part), and ``sums`` float64 ``(rows, ceil(entries /
    block))`` (NaN on those rows). NotImplemented without the kernel.
    """
    if not _takes_float_matrix(x) or block < 1:
        return NotImplemented
    if not x.flags.aligned:  # see _plan
        x = x.copy()
    rows, length = x.shape
    t_row = None
    t_value = 1.0
    if isinstance(temperature, np.ndarray) and temperature.ndim:
        t_row = np.ascontiguousarray(temperature, dtype=np.float64).reshape(rows, 1)
        if not (np.isfinite(t_row).all() and (t_row > 0).all()):
            return NotImplemented
    else:
        t_value = float(temperature)
        if not (t_value > 0.0 and np.isfinite(t_value)):
            return NotImplemented
    mask = None
    if where is not None:
        mask = np.broadcast_to(np.asarray(where, dtype=np.bool_), x.shape)
    stats = np.empty((rows, 2), dtype=np.float64)
    sums = np.empty((rows, -(-length // block)), dtype=np.float64)
    _kernel.run(
        LOGSUMEXP, x, _CODES[x.dtype], None, _CODES[x.dtype], mask, t_row, t_value, stats,
        _setting[0], None, sums, int(block),
    )
    return stats, sums
