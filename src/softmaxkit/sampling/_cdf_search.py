"""Drawing by the inverse CDF: a search of the cumulative sums, in two levels for long rows."""

from __future__ import annotations

import numpy as np

from .._lib._dtypes import _has_float64
from .._lib._namespace import device_of
from .._lib._random import searchsorted_right
from ._rows import _index_dtype, _Rows

# Rows longer than 4 * _BLOCK are searched in two levels: blocks of entries, then the
# entries of the chosen block, so the cumulative sum of a long row is never formed.
# _BLOCK is the largest block; more draws per row take smaller blocks (see _block_size).
_BLOCK = 1024
# NumPy sums blocks shorter than this markedly slower per entry.
_SMALLEST_BLOCK = 64


def _block_size(width: int, draws: int) -> int:
    """The block length of the two-level search, or 0 for one cumulative sum over the row.

    The block sums cost about one read of the row whatever the block length (down to
    _SMALLEST_BLOCK), and each draw then reads one block: the block shrinks by halves
    while ``draws * block**2`` exceeds ``4 * width``. Reading a block costs several
    times more per entry than the row's cumulative sum (a gather and a float64
    cumulative sum per draw), so draws that would read more than a quarter of the
    row's length take the single cumulative sum instead.
    """
    if width <= 4 * _BLOCK:
        return 0
    block = _BLOCK
    smallest = min(_SMALLEST_BLOCK, _BLOCK)
    while block > smallest and draws * block * block > 4 * width:
        block //= 2
    return block if 4 * draws * block <= width else 0


def _last_positive(xp, weight, axis):
    """Index of the last entry > 0 along ``axis`` (keepdims)."""
    width = weight.shape[axis]
    positive = xp.flip(xp.astype(weight > 0, xp.int8), axis=axis)
    last = (width - 1) - xp.argmax(positive, axis=axis, keepdims=True)
    return xp.astype(last, _index_dtype(xp))


def _search(xp, library, cdf, u, weight):
    """Per row, the entry whose CDF interval holds ``u``, never one of weight 0.

    ``u`` may reach the row total by rounding: such a draw falls back on the last
    entry of positive weight, so an entry of weight 0 (an empty interval) is never
    returned.
    """
    index = xp.astype(searchsorted_right(xp, library, cdf, u), _index_dtype(xp))
    return xp.minimum(index, _last_positive(xp, weight, 1))


def _inverse_cdf(rows: _Rows, z, draws, randomness):
    xp = rows.xp
    weight = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return _draw_by_weight(xp, rows.library, weight, draws, randomness)


def _draw_by_weight(xp, library, weight, draws, randomness):
    """Per row, ``draws`` indices drawn with probability proportional to ``weight`` (>= 0)."""
    cdf_dtype = xp.float64 if _has_float64(xp, weight) else weight.dtype
    u = randomness.uniform((weight.shape[0], draws), cdf_dtype)
    return _search_weights(xp, library, weight, u)


def _search_weights(xp, library, weight, u, *, check=False):
    """Per row, the entries where the uniform numbers ``u`` (rows, draws) fall in the CDF.

    The cumulative sums are formed in the dtype of ``u`` (float64 where the library
    has it), whatever the dtype of ``weight``. With ``check``, None when a row's
    total is not positive (a NaN row, or one with no weight).
    """
    count, width = weight.shape
    draws = u.shape[1]
    cdf_dtype = u.dtype
    size = _block_size(width, draws)
    if size == 0:
        if weight.dtype == cdf_dtype:
            cdf = xp.cumulative_sum(weight, axis=1)
        elif library == "numpy":
            cdf = np.cumsum(weight, axis=1, dtype=cdf_dtype)  # no float64 copy of the row
        else:
            cdf = xp.cumulative_sum(xp.astype(weight, cdf_dtype), axis=1)
        if check and not bool(xp.all(cdf[:, -1] > 0)):
            return None
        return _search(xp, library, cdf, u * cdf[:, -1:], weight)
    blocks = -(-width // size)
    full = width // size
    # The block sums are taken in the dtype of the weights (pairwise in NumPy): their
    # rounding moves only the boundaries between blocks, by a few ulp of a block's
    # mass. A block of weight 0 sums to exactly 0, so it is never chosen.
    block_weight = xp.sum(xp.reshape(weight[:, : full * size], (count, full, size)), axis=2)
    if full < blocks:
        tail = xp.sum(weight[:, full * size :], axis=1, keepdims=True)
        block_weight = xp.concat([block_weight, tail], axis=1)
    block_weight = xp.astype(block_weight, cdf_dtype)

    def block_entries(columns, inside):
        inner = xp.take_along_axis(weight, columns, axis=1)
        return xp.where(inside, inner, xp.zeros_like(inner))

    return _search_blocks(xp, library, block_weight, u, size, width, block_entries, check=check)


def _search_blocks(xp, library, block_weight, u, size, width, block_entries, *, check=False):
    """The two-level search: a block from the running sum of the block sums, then an
    entry from the running sum of that block's entries alone.

    ``block_weight`` (rows, blocks) holds the block sums, in the dtype of the
    cumulative sums; ``block_entries(columns, inside)`` returns the weights of the
    entries at ``columns`` (rows, draws * size; clamped to the row, ``inside`` False
    past its end), 0 where not inside. With ``check``, None when a row's total is
    not positive.
    """
    count, draws = u.shape
    block_cdf = xp.cumulative_sum(block_weight, axis=1)
    if check and not bool(xp.all(block_cdf[:, -1] > 0)):
        return None
    u = u * block_cdf[:, -1:]
    block = _search(xp, library, block_cdf, u, block_weight)
    before = xp.concat([xp.zeros_like(block_cdf[:, :1]), block_cdf[:, :-1]], axis=1)
    # How far into its block the draw fell, as a fraction of the block's mass; the
    # entry is then found in the float64 cumulative sum of that block alone, scaled
    # to it, so the choice within a block is exact whatever the block sum's rounding.
    fraction = (u - xp.take_along_axis(before, block, axis=1)) / xp.take_along_axis(
        block_weight, block, axis=1
    )
    offsets = xp.arange(size, dtype=_index_dtype(xp), device=device_of(xp, block_weight))
    columns = xp.reshape(block[:, :, None] * size + offsets, (count, draws * size))
    # The last block may be partial: its missing columns get weight 0.
    inside = columns < width
    inner = block_entries(xp.where(inside, columns, width - 1), inside)
    inner = xp.reshape(inner, (count * draws, size))
    inner_cdf = xp.cumulative_sum(xp.astype(inner, block_weight.dtype), axis=1)
    target = xp.reshape(fraction, (count * draws, 1)) * inner_cdf[:, -1:]
    inner_index = _search(xp, library, inner_cdf, target, inner)
    return block * size + xp.reshape(inner_index, (count, draws))
