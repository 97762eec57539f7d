"""The compiled kernel for NumPy arrays (internal).

Two ways in. The common call (a float ndarray, the last axis, a scalar temperature,
no mask) is checked and run by the extension itself, without a Python frame:
:data:`fast_normalize` and :data:`fast_reduce`, which the dispatcher (``_dispatch.py``)
tries before anything else, and which decline (``NotImplemented``) whatever they do not
take, invalid arguments included. Every other call is validated first
(``_lib/_call.py``); then :func:`plan` says whether the kernel takes it, and
:func:`normalize` / :func:`reduce` run the plan. The losses and the sampler use
:func:`softmax_stats` and :func:`block_sums`; the soft cap of the losses :func:`softcap`.

For tests: :func:`kernel_available`, :func:`generic_only`, :func:`simd`.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .._lib._library import Library
from .._lib._validation import check_out
from .._threads import _setting

try:
    from . import _kernel
except ImportError:  # running from a source tree without the built extension
    _kernel = None

__all__ = [
    "SOFTMAX",
    "LOG_SOFTMAX",
    "LOGSUMEXP",
    "kernel_available",
    "kernel_runs",
    "generic_only",
    "simd",
    "fast_normalize",
    "fast_reduce",
    "plan",
    "normalize",
    "reduce",
    "softmax_stats",
    "block_sums",
    "SOFTCAP_VALUES",
    "SOFTCAP_SCALE",
    "SOFTCAP_DERIVATIVE",
    "SOFTCAP_BOTH",
    "SOFTCAP_SCALE_BY",
    "softcap",
]

SOFTMAX, LOG_SOFTMAX, LOGSUMEXP = 0, 1, 2

_forced_generic = [False]


def _decline(*args):
    return NotImplemented


#: ``fast_normalize(op, x, axis, temperature, where, dtype, out)``: softmax (op 0) or
#: log_softmax (op 1) of the common call (a float ndarray, the last axis, a scalar
#: temperature, no mask), checked and run by the extension without a Python frame;
#: NotImplemented for anything else.
fast_normalize = _decline
#: ``fast_reduce(x, axis, temperature, where, dtype, keepdims, out)``: logsumexp (without
#: ``b`` and ``return_sign``) of the common call in the same way, or NotImplemented.
fast_reduce = _decline
if _kernel is not None:
    _kernel.set_thread_setting(_setting)
    fast_normalize = _kernel.normalize
    fast_reduce = _kernel.reduce

_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2}


def kernel_available() -> bool:
    """Whether the compiled kernels are importable."""
    return _kernel is not None


def kernel_runs() -> int:
    """How many jobs the kernel has completed (counted by the extension)."""
    return 0 if _kernel is None else _kernel.runs()


def simd() -> str | None:
    """The instruction set the kernels use ('avx512', 'avx2' or 'baseline'), or None."""
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


def _code(dt):
    code = _CODES.get(dt)
    if code is None and dt.name == "bfloat16" and dt.itemsize == 2:
        code = _CODES[dt] = 3
    return code


class Plan:
    """How the kernel runs one validated call: the input (in a dtype it reads), its
    type code, the normalized axis, the temperature (a scalar, or float64 per row),
    the mask; or ``flatten``: every axis of a C-contiguous array, as one row."""

    __slots__ = ("x", "code", "axis", "t_value", "t_row", "mask", "flatten")

    def __init__(self, x, code, axis, t_value, t_row, mask, flatten=False):
        self.x, self.code, self.axis = x, code, axis
        self.t_value, self.t_row, self.mask, self.flatten = t_value, t_row, mask, flatten


def plan(call):
    """The kernel's :class:`Plan` for a validated call, or None where it does not take it.

    It takes NumPy input of float32, float64, float16 or bfloat16 (integers and bools
    converted to float64 first, as the dtype rules say), over one axis or all of them,
    with a scalar or per-row temperature and any mask, in up to ``MAX_NDIM``
    dimensions; not a ``dtype=`` that changes the dtype, nor empty or 0-d input.
    """
    if _kernel is None or _forced_generic[0] or call.library is not Library.NUMPY:
        return None
    source = call.source
    if type(source) is not np.ndarray:
        return None
    code = _code(source.dtype)
    converted = code is None
    if converted:
        if source.dtype.kind not in "biu" or np.dtype(call.plan.result) != np.float64:
            return None
        x = source.astype(np.float64)  # integers and bools: the default float first
        code = 1
    else:
        if np.dtype(call.plan.result) != source.dtype:
            return None
        x = source
    ndim = x.ndim
    if ndim == 0 or x.size == 0 or ndim > _kernel.MAX_NDIM:
        return None
    if not x.flags.aligned:
        # The kernel reads x by typed loads in places: a misaligned view (np.frombuffer
        # at an odd offset, a field of a packed structured array) is copied first.
        x = x.copy(order="K")
    scalar_temperature = isinstance(call.temperature, float)
    if len(call.axes) != 1:
        if len(call.axes) != ndim or converted or call.keep is not None or not scalar_temperature:
            return None
        if not x.flags.c_contiguous:
            return None
        return Plan(x, code, ndim - 1, call.temperature, None, None, flatten=True)
    axis = call.axes[0]
    t_row = None
    t_value = call.temperature if scalar_temperature else 1.0
    if not scalar_temperature:
        # float64 from the argument itself: the working dtype of float16 input is float32.
        padded = tuple(call.temperature.shape)
        with np.errstate(over="ignore", under="ignore"):
            t_row = np.asarray(call.temperature_given, dtype=np.float64).reshape(padded)
        t_row = np.broadcast_to(t_row, x.shape[:axis] + (1,) + x.shape[axis + 1 :])
    return Plan(x, code, axis, t_value, t_row, call.keep)


def _moved(array, axis, ndim):
    if array is None or axis == ndim - 1:
        return array
    return np.moveaxis(array, axis, -1)


def normalize(op, plan, out):
    """softmax (op 0) or log_softmax (op 1) of a :class:`Plan`, into ``out`` if given."""
    x = plan.x
    if plan.flatten:
        flat_out = None
        if out is not None:
            check_out(out, x.shape, x.dtype)
            if not out.flags.c_contiguous:
                result = normalize(op, Plan(x.reshape(-1), plan.code, 0, plan.t_value,
                                            None, None), None)
                np.copyto(out, result.reshape(x.shape))
                return out
            flat_out = out.reshape(-1)
        flat = Plan(x.reshape(-1), plan.code, 0, plan.t_value, None, None)
        result = normalize(op, flat, flat_out)
        return out if out is not None else result.reshape(x.shape)
    if out is not None:
        check_out(out, x.shape, x.dtype)
    # A misaligned out (the kernel stores by typed stores in places) gets a copy.
    aside = out is not None and not out.flags.aligned
    target = np.empty_like(x) if out is None or aside else out
    ndim, axis, code = x.ndim, plan.axis, plan.code

    def run_into(destination):
        return _kernel.run(
            op,
            _moved(x, axis, ndim),
            code,
            _moved(destination, axis, ndim),
            code,
            _moved(plan.mask, axis, ndim),
            _moved(plan.t_row, axis, ndim),
            plan.t_value,
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


def reduce(plan, keepdims):
    """logsumexp of a :class:`Plan` (without ``b`` and ``return_sign``)."""
    x = plan.x
    if plan.flatten:
        result = reduce(Plan(x.reshape(-1), plan.code, 0, plan.t_value, None, None), False)
        return result.reshape((1,) * x.ndim) if keepdims else result
    ndim, axis = x.ndim, plan.axis
    kept_shape = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
    result = np.empty(kept_shape, dtype=x.dtype)
    _kernel.run(
        LOGSUMEXP,
        _moved(x, axis, ndim),
        plan.code,
        None,
        plan.code,
        _moved(plan.mask, axis, ndim),
        _moved(plan.t_row, axis, ndim),
        plan.t_value,
        _moved(result, axis, ndim),
        _setting[0],
    )
    if not keepdims:
        result = result.reshape(x.shape[:axis] + x.shape[axis + 1 :])
    return result


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
    """Softmax of the rows of ``x`` into ``out`` and the normalizer of each row.

    For the losses: ``x`` is a 2-D float32 or float64 NumPy array (rows, classes), with
    any strides; ``out`` a writeable array of the same shape and dtype that does not
    overlap it, or None for the statistics alone (one pass that reads ``x`` and writes
    nothing else: logsumexp's run, which returns the same pairs); ``temperature`` a
    scalar; ``gain`` None or a float64 array of shape ``(rows,)`` that multiplies each
    row of the result (the gradient's row factor).

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
        or (out is not None and type(out) is not np.ndarray)
        or (out is not None and (out.shape != x.shape or out.dtype != x.dtype))
        or (out is None and gain is not None)
        or not float(temperature) > 0.0
        or np.isinf(temperature)
    ):
        return NotImplemented
    code = _CODES[x.dtype]
    if not x.flags.aligned:  # see plan()
        x = x.copy()
    stats = np.empty((x.shape[0], 2), dtype=np.float64)
    if out is None:
        _kernel.run(
            LOGSUMEXP, x, code, None, code, None, None, float(temperature), stats, _setting[0]
        )
        return stats
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
    if not x.flags.aligned:  # see plan()
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


SOFTCAP_VALUES, SOFTCAP_SCALE, SOFTCAP_DERIVATIVE, SOFTCAP_BOTH, SOFTCAP_SCALE_BY = range(5)
# The caps the entry takes: x * (1 / cap) is then a normal float64 number (or 0) for
# every float32 x, within an ulp of x / cap.
_SOFTCAP_RANGE = (2.0**-64, 2.0**64)


def _rows_contiguous(a):
    return a.shape[1] <= 1 or a.strides[1] == a.itemsize


def _takes_output(out, shape, dtype):
    return (
        type(out) is np.ndarray
        and out.shape == shape
        and out.dtype == dtype
        and out.flags.writeable
        and out.flags.aligned
        and _rows_contiguous(out)
    )


def softcap(mode, x, out, cap, d=None):
    """The soft cap ``cap * tanh(x / cap)`` of float32 logits, or its derivative.

    ``x`` is a 2-D float32 NumPy array (float64 for :data:`SOFTCAP_SCALE_BY`); ``out``
    (and ``d``) ndarrays of its shape, each row contiguous, that overlap neither it nor
    each other. ``mode`` :data:`SOFTCAP_VALUES` writes the capped logits into ``out``
    (float32, each computed in float64 and rounded once; -inf and NaN kept, +inf gives
    ``cap``); :data:`SOFTCAP_SCALE` multiplies ``out`` (float32, a gradient) by the
    derivative ``1 - tanh(x / cap)**2``, rounded once; :data:`SOFTCAP_DERIVATIVE`
    writes that derivative into ``out`` (float64); :data:`SOFTCAP_BOTH` the capped
    logits into ``out`` and the derivative into ``d`` (float64), in one pass;
    :data:`SOFTCAP_SCALE_BY` multiplies ``out`` (float32) by ``x`` (float64, a
    derivative so written), rounded once. One pass, on the kernel's threads. Returns
    ``out``, or NotImplemented without the kernel, for a ``cap`` outside
    ``[2**-64, 2**64]``, or for arrays it does not take.
    """
    x_dtype = np.float64 if mode == SOFTCAP_SCALE_BY else np.float32
    out_dtype = np.float64 if mode == SOFTCAP_DERIVATIVE else np.float32
    if (
        not _takes_float_matrix(x)
        or x.dtype != x_dtype
        or not _takes_output(out, x.shape, out_dtype)
        or (mode == SOFTCAP_BOTH) != (d is not None)
        or (d is not None and not _takes_output(d, x.shape, np.float64))
        or not _SOFTCAP_RANGE[0] <= cap <= _SOFTCAP_RANGE[1]
        or np.may_share_memory(x, out)
        or (d is not None and (np.may_share_memory(x, d) or np.may_share_memory(out, d)))
    ):
        return NotImplemented
    if not x.flags.aligned or not _rows_contiguous(x):
        x = x.copy()  # C order: aligned, each row contiguous
    if d is None:
        _kernel.softcap(mode, x, out, float(cap), _setting[0])
    else:
        _kernel.softcap(mode, x, out, float(cap), _setting[0], d)
    return out
