"""softmax, log_softmax and logsumexp of Dask arrays: one reduction over the state.

The generic path runs the core on a Dask array as two reductions (the maximum,
then the sum of the shifted exponentials), each a pass over the data. Here every
block is summarised by the two numbers per row of the mergeable state
``(max, sum - 1)`` (``_lib/_online.py``); ``dask.array.reduction`` merges the block
states in a tree (the merge is the combine and the aggregate step), and a
``map_blocks`` normalizes each block with the row states. The normalized axis is
never rechunked; the data is read twice (once for the state, once for the
output), and only the states, ``2 * rows`` numbers per block, travel between
workers.

float32 blocks normalized over their last axis with a finite temperature take the
compiled kernel: each block's state comes from one kernel pass
(:func:`~._kernels.block_sums`: the row maximum and the log1p form of the row sum), kept
per block, and softmax writes each block in one kernel call whose per-row gain
``exp(log S_b - log S + (m_b - m) / T)`` turns the block's own softmax into the whole
row's, rounded once. Rows that are not finite, masks, other dtypes and the
temperature limits take the array-API code.

Dask is imported only here, and this module only when a Dask array arrives.
"""

from __future__ import annotations

import array_api_compat
import numpy as np

from . import _kernels
from ._lib._online import chunk_state, merge_states, normalize_chunk, state_logsumexp

__all__ = ["handles", "softmax", "log_softmax", "logsumexp"]


def handles(args) -> bool:
    """Whether the prepared arguments are a Dask array this module normalizes."""
    return (
        array_api_compat.is_dask_array(args.x)
        and bool(args.axes)
        and isinstance(args.temperature, float)
        and not args.is_empty
    )


def _state_dtype(work):
    return np.dtype([("max", work), ("sum_minus_one", work)])


def _numpy():
    return array_api_compat.array_namespace(np.empty(0))


def _pack(maximum, sum_minus_one):
    packed = np.empty(maximum.shape, dtype=_state_dtype(maximum.dtype))
    packed["max"] = maximum
    packed["sum_minus_one"] = sum_minus_one
    return packed


def _widened(args):
    """Whether the work dtype is wider than the result's (see ``_lib/_online.py``)."""
    return np.dtype(args.plan.work).itemsize > np.dtype(args.plan.result).itemsize


def _kernel_takes(block, axis, temperature):
    """Whether the kernel computes this block's state and softmax: a float32 NumPy block
    normalized over its last axis, a finite temperature > 0."""
    return (
        type(block) is np.ndarray
        and block.dtype == np.float32
        and block.ndim >= 1
        and tuple(axis) == (block.ndim - 1,)
        and block.size > 0
        and 0.0 < temperature < np.inf
        and _kernels.kernel_available()
        and not _kernels._forced_generic[0]
    )


def _kernel_state(block, temperature):
    """``(max, sum - 1)`` in float64 by one kernel pass, or None where a row is not
    finite (the kernel's statistics are NaN there)."""
    rows = block.reshape(-1, block.shape[-1])
    found = _kernels.block_sums(rows, rows.shape[1], temperature=temperature)
    if found is NotImplemented:
        return None
    stats, _ = found
    if not np.isfinite(stats).all():
        return None
    shape = block.shape[:-1] + (1,)
    return stats[:, 0].reshape(shape), np.expm1(stats[:, 1]).reshape(shape)


def _block_state(block, axis, keepdims, temperature, widened, work):
    if _kernel_takes(block, axis, temperature):
        state = _kernel_state(block, temperature)
        if state is not None:
            return _pack(*state)
    block = np.asarray(block, dtype=work)
    return _pack(*chunk_state(_numpy(), block, axis, temperature=temperature, widened=widened))


def _kernel_softmax(block, block_state, row_state, temperature):
    """softmax of a float32 block given its own state and the whole row's, by one kernel
    call with a per-row gain; None where a state is not finite."""
    rows = block.reshape(-1, block.shape[-1])
    own_max = np.ascontiguousarray(block_state["max"]).reshape(-1)
    own_sum = np.ascontiguousarray(block_state["sum_minus_one"]).reshape(-1)
    row_max = np.ascontiguousarray(row_state["max"]).reshape(-1)
    row_sum = np.ascontiguousarray(row_state["sum_minus_one"]).reshape(-1)
    if not (np.isfinite(own_max).all() and np.isfinite(row_max).all()):
        return None
    with np.errstate(all="ignore"):
        exponent = (np.log1p(own_sum) - np.log1p(row_sum)) + (own_max - row_max) / temperature
        gain = np.exp(exponent)
    if not np.isfinite(gain).all():
        return None
    out = np.empty(rows.shape, dtype=np.float32)
    if _kernels.softmax_stats(rows, out, temperature=temperature, gain=gain) is NotImplemented:
        return None
    return out.reshape(block.shape)


def _merge(states, axis, keepdims, temperature):
    maximum = np.ascontiguousarray(states["max"])
    sum_minus_one = np.ascontiguousarray(states["sum_minus_one"])
    return _pack(*merge_states(_numpy(), maximum, sum_minus_one, axis, temperature=temperature))


def _row_state(args, *, per_block=False):
    """The whole-row state of every row: a lazy structured array, keepdims; with
    ``per_block``, also each block's own state (one per block along the axes)."""
    import dask.array as da

    # The blocks are converted to the working dtype inside each task: a separate
    # conversion task would hold the widened copy between the two passes.
    x = args.source
    work = np.dtype(args.plan.work)
    if args.keep is not None:
        x = da.where(args.keep, x, np.asarray(-np.inf, dtype=work))
    temperature = args.temperature
    widened = _widened(args)
    state_dtype = _state_dtype(work)

    def block_state(block, axis, keepdims):
        return _block_state(block, axis, keepdims, temperature, widened, work)

    def merge(states, axis, keepdims):
        return _merge(states, axis, keepdims, temperature)

    if per_block:
        axes = tuple(args.axes)
        chunks = tuple((1,) * len(c) if i in axes else c for i, c in enumerate(x.chunks))
        blocks = x.map_blocks(
            lambda block: block_state(block, axes, True),
            chunks=chunks,
            dtype=state_dtype,
            meta=np.empty((0,) * x.ndim, dtype=state_dtype),
            name="softmaxkit-logsumexp-state-blocks",
        )
        state = da.reduction(
            blocks,
            lambda states, axis, keepdims: states,
            merge,
            combine=merge,
            axis=args.axes,
            keepdims=True,
            dtype=state_dtype,
            concatenate=True,
            meta=np.empty((0,) * x.ndim, dtype=state_dtype),
            name="softmaxkit-logsumexp-state",
        )
        return x, state, blocks
    state = da.reduction(
        x,
        block_state,
        merge,
        combine=merge,
        axis=args.axes,
        keepdims=True,
        dtype=state_dtype,
        concatenate=True,
        meta=np.empty((0,) * x.ndim, dtype=state_dtype),
        name="softmaxkit-logsumexp-state",
    )
    return x, state


def _normalized(args, log):
    temperature = args.temperature
    axes = args.axes
    widened = _widened(args)
    work = np.dtype(args.plan.work)
    result_dtype = np.dtype(args.plan.result)
    # float32 softmax over the last axis: the kernel, with each block's own state.
    kernel = (
        not log
        and args.keep is None
        and np.dtype(args.source.dtype) == np.float32
        and result_dtype == np.float32
        and tuple(axes) == (args.source.ndim - 1,)
        and 0.0 < temperature < np.inf
        and _kernels.kernel_available()
    )
    if kernel:
        x, state, blocks = _row_state(args, per_block=True)
    else:
        x, state = _row_state(args)
        blocks = None

    def normalize_block(block, row_state, block_state=None):
        if block_state is not None and _kernel_takes(block, axes, temperature):
            values = _kernel_softmax(block, block_state, row_state, temperature)
            if values is not None:
                return values
        values = normalize_chunk(
            _numpy(),
            np.asarray(block, dtype=work),
            axes,
            np.ascontiguousarray(row_state["max"]),
            np.ascontiguousarray(row_state["sum_minus_one"]),
            temperature=temperature,
            log=log,
            widened=widened,
        )
        # Beyond the result dtype's range the cast rounds to +-inf, the limit (as the
        # saturation of the generic path does), without the overflow warning.
        with np.errstate(over="ignore"):
            return values.astype(result_dtype, copy=False)

    name = "softmaxkit-log-softmax" if log else "softmaxkit-softmax"
    meta = np.empty((0,) * x.ndim, result_dtype)
    # token= (not name=): a name would be the same key for every call, and two
    # normalizations in one graph (log_p and log_q of a divergence) would collide.
    operands = (state,) if blocks is None else (state, blocks)
    result = x.map_blocks(normalize_block, *operands, dtype=result_dtype, meta=meta, token=name)
    return args.finish(result)


def softmax(args):
    """softmax of a prepared Dask array."""
    return _normalized(args, log=False)


def log_softmax(args):
    """log_softmax of a prepared Dask array."""
    return _normalized(args, log=True)


def logsumexp(args, *, keepdims, return_sign):
    """logsumexp of a prepared Dask array (without weights ``b``)."""
    _, state = _row_state(args)
    temperature = args.temperature
    work = np.dtype(args.plan.work)

    def block_logsumexp(row_state):
        return state_logsumexp(
            _numpy(),
            np.ascontiguousarray(row_state["max"]),
            np.ascontiguousarray(row_state["sum_minus_one"]),
            temperature=temperature,
        )

    def block_sign(row_state):
        empty = row_state["max"] == -np.inf
        return np.where(empty, np.zeros((), work), np.ones((), work))

    meta = np.empty((0,) * args.x.ndim, work)
    result = state.map_blocks(block_logsumexp, dtype=work, meta=meta)
    sign = state.map_blocks(block_sign, dtype=work, meta=meta)
    if not keepdims:
        result = result.squeeze(axis=args.axes)
        sign = sign.squeeze(axis=args.axes)
    if return_sign:
        return args.finish(result), args.finish(sign)
    return args.finish(result)
