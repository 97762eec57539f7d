"""NumPy draws through the compiled kernel: the unfiltered fast path and the kept entries.

No float64 copy of the rows and no cumulative sum over a whole long row: one
compiled pass gives the probabilities (or the sums of ``exp`` by blocks), and the
search of :mod:`._cdf_search` reads them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _kernels
from .._lib._namespace import array_namespace
from .._lib._random import Randomness
from .._softmax import softmax
from ._cdf_search import _block_size, _search_blocks, _search_weights
from ._rows import _index_dtype, _Rows, _Setup


def _numpy_draws(logits, axis, temperature, where, top_k, num_samples, method, rng):
    """``sample`` for a NumPy array without filters, or None where the general path is needed.

    At a temperature that is finite and > 0 (scalar or per row), one pass of the
    compiled softmax writes the probabilities, in the input's dtype (float32 for
    float32 and half inputs), into a buffer that the two-level search then reads:
    no float64 copy of the rows and no cumulative sum over a whole row. At
    temperature 0 it is one ``argmax`` (the lowest index among tied maxima). NaN
    rows and rows with no allowed entry return None, and the general path raises
    the error; so does temperature ``inf`` and a per-row temperature array holding
    0 or ``inf``.
    """
    if type(logits) is not np.ndarray or num_samples == 0:
        return None
    if logits.dtype in (np.float32, np.float64):
        x = logits
    elif logits.dtype == np.float16 or logits.dtype.name == "bfloat16":
        x = logits.astype(np.float32)  # exact
    else:
        return None
    if x.size == 0 or type(axis) is not int or not -x.ndim <= axis < x.ndim:
        return None
    axis %= x.ndim
    n = x.shape[axis]
    if top_k is not None and top_k < n:
        return None
    if where is not None:
        if type(where) is not np.ndarray or where.dtype != np.bool_:
            return None
        try:
            if np.broadcast_shapes(where.shape, x.shape) != x.shape:
                return None
        except ValueError:
            return None
    greedy = False
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, (bool, np.bool_)):
        greedy = float(temperature) == 0.0
        if not (greedy or 0.0 < float(temperature) < math.inf):
            return None
    elif isinstance(temperature, np.ndarray) and temperature.dtype.kind in "fiu":
        if temperature.ndim > x.ndim:
            return None
        shape = (1,) * (x.ndim - temperature.ndim) + temperature.shape
        if shape[axis] != 1 or any(t not in (1, m) for t, m in zip(shape, x.shape, strict=True)):
            return None
        if not bool(np.all((temperature > 0) & (temperature < math.inf))):
            return None
    else:
        return None
    if not greedy and (method != "inverse_cdf" or not _kernels.kernel_available()):
        return None
    randomness = Randomness("numpy", rng, logits)
    batch_shape = x.shape[:axis] + x.shape[axis + 1 :]
    out_shape = batch_shape + (() if num_samples is None else (num_samples,))
    draws = 1 if num_samples is None else num_samples
    xp = array_namespace(x)
    if greedy:
        if where is not None:
            x = np.where(where, x, x.dtype.type(-math.inf))
        rows = np.moveaxis(x, axis, -1).reshape(-1, n)
        choice = np.argmax(rows, axis=1)
        # NaN is the argmax of a row holding one; -inf, of a row with no allowed entry.
        if not bool(np.all(rows[np.arange(rows.shape[0]), choice] > -math.inf)):
            return None
        choice = np.repeat(choice[:, None], draws, axis=1)
    else:
        choice = _softmax_draws(x, axis, temperature, where, draws, randomness)
        if choice is None:
            return None
    return np.asarray(choice, dtype=_index_dtype(xp)).reshape(out_shape)


def _softmax_draws(x, axis, temperature, where, draws, randomness):
    """Draws from the compiled softmax of ``x`` (a float32 or float64 array); None for bad rows."""
    n = x.shape[axis]
    size = _block_size(n, draws)
    if size:
        return _block_sum_draws(x, axis, temperature, where, draws, randomness, size)
    batch_shape = x.shape[:axis] + x.shape[axis + 1 :]
    probabilities = np.empty(batch_shape + (n,), dtype=x.dtype)
    softmax(
        x,
        axis=axis,
        temperature=temperature,
        where=where,
        out=np.moveaxis(probabilities, -1, axis),
    )
    weight = probabilities.reshape(-1, n)
    u = randomness.uniform((weight.shape[0], draws), np.float64)
    return _search_weights(array_namespace(weight), "numpy", weight, u, check=True)


def _block_sum_draws(x, axis, temperature, where, draws, randomness, size):
    """Draws from long rows without writing their probabilities; None for bad rows.

    One compiled pass gives each row's maximum and the sums of
    ``exp((x - max) / temperature)`` over blocks of ``size`` entries (the kernel's
    logsumexp, block by block); a draw picks its block from their float64 running
    sum, and its entry from the float64 ``exp`` of that block alone, scaled to the
    block's own sum, so that the rounding of a block sum moves only the boundaries
    between blocks. An entry of weight 0 (masked, ``-inf``, or below float64's
    range) is never returned.
    """
    n = x.shape[axis]
    rows = np.moveaxis(x, axis, -1).reshape(-1, n)
    count = rows.shape[0]
    t = temperature
    if isinstance(temperature, np.ndarray):
        shape = (1,) * (x.ndim - temperature.ndim) + temperature.shape
        target = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
        t = np.broadcast_to(np.reshape(temperature, shape), target)
        t = np.moveaxis(t, axis, -1).reshape(count, 1).astype(np.float64)
    mask = None
    if where is not None:
        mask = np.moveaxis(np.broadcast_to(where, x.shape), axis, -1).reshape(count, n)
    found = _kernels.block_sums(rows, size, temperature=t, where=mask)
    if found is NotImplemented:
        return None
    stats, block_weight = found
    if not bool(np.all(np.isfinite(stats[:, 1]))):
        return None
    u = randomness.uniform((count, draws), np.float64)
    top = stats[:, :1]
    divisor = t if isinstance(t, np.ndarray) else float(t)

    def block_entries(columns, inside):
        # The float64 exp of the chosen blocks' entries, 0 where masked or -inf.
        values = np.take_along_axis(rows, columns, axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            shifted = (values - top) / divisor
        kept = inside & (values > -math.inf)
        if mask is not None:
            kept &= np.take_along_axis(mask, columns, axis=1)
        return np.exp(np.where(kept, shifted, -math.inf))

    return _search_blocks(array_namespace(rows), "numpy", block_weight, u, size, n, block_entries)


def _kept_softmax_draws(setup: _Setup, rows: _Rows, draws, randomness):
    """NumPy after the filters: draws from one compiled softmax pass over the kept entries.

    The softmax of the logits divided by the temperature, over the entries the
    filters kept, is the distribution to draw from whatever the order of the
    steps; it is computed from the input logits (gathered where the rows were
    compacted), as in :func:`_numpy_draws`. None where the general path is needed:
    no kernel, a dtype the kernel does not take, temperature 0 or ``inf``.
    """
    if setup.library != "numpy" or not _kernels.kernel_available():
        return None
    t = setup.temperature
    if isinstance(t, float):
        if not 0.0 < t < math.inf:
            return None
    elif not bool(np.all((t > 0) & (t < math.inf))):
        return None
    source = setup.source
    if source.dtype == np.float16 or source.dtype.name == "bfloat16":
        source = source.astype(np.float32)  # exact
    elif source.dtype not in (np.float32, np.float64):
        return None
    logits = np.moveaxis(source, setup.axis, -1).reshape(setup.count, setup.n)
    if rows.positions is not None:
        logits = np.take_along_axis(logits, rows.positions, axis=1)
    # +inf rows were replaced by their limit (0 at the +inf entries, -inf elsewhere),
    # so the kept +inf entries share the mass equally here too.
    weight = softmax(logits, axis=-1, temperature=t, where=np.asarray(rows.finite()))
    u = randomness.uniform((setup.count, draws), np.float64)
    return _search_weights(rows.xp, "numpy", weight, u, check=True)
