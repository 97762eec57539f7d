"""The rows of one sampling call: the validated logits as (rows, n), and their candidates.

:class:`_Setup` checks the arguments that concern the array (its library, dtype,
axis, temperature and mask) and moves the sampled axis last; :class:`_Rows` holds
the logits being filtered, compacted to the kept entries once a filter has kept few
of a long row.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._lib._dtypes import _has_float64, _name, plan_dtypes
from .._lib._namespace import array_namespace, as_array, device_of
from .._lib._random import library_of, top_m_indices
from .._lib._validation import broadcast_mask, check_ndim, check_temperature, single_axis

# Below this fraction of the row width, the kept entries are gathered into a
# narrower candidate array (the gather costs one partial selection).
_COMPACT_FRACTION = 4


class _Rows:
    """Logits of shape (rows, m) with the positions they came from and a pending temperature.

    ``values`` holds the logits, ``-inf`` where removed. ``positions`` (or None for
    "column j is entry j") maps each column back to the entry of the input row.
    ``scale`` is a temperature not yet divided in: top-k only ranks, so the
    division over a whole vocabulary is put off until a filter needs probabilities,
    by which time the row is often down to a few candidates.
    """

    def __init__(self, xp, library, values, prob_dtype, compact):
        self.xp = xp
        self.library = library
        self.values = values
        self.positions = None
        self.scale = None
        self.prob_dtype = prob_dtype
        self.compact = compact

    @property
    def width(self) -> int:
        return self.values.shape[1]

    def constant(self, value, dtype=None):
        dtype = self.values.dtype if dtype is None else dtype
        return self.xp.asarray(value, dtype=dtype, device=device_of(self.xp, self.values))

    def scaled(self):
        """The logits divided by the temperature, in the probability dtype."""
        xp = self.xp
        if self.values.dtype != self.prob_dtype:
            self.values = xp.astype(self.values, self.prob_dtype)
        if self.scale is not None:
            self.values = self.values / self.scale
            self.scale = None
        return self.values

    def finite(self):
        return self.values > self.constant(-math.inf)

    def restrict(self, keep, indices=None):
        """Remove the entries where ``keep`` is False.

        ``indices`` (rows, M), when given, holds every kept column of each row.
        """
        xp = self.xp
        neg_inf = self.constant(-math.inf)
        kept = None
        if self.compact and indices is None:
            counts = xp.sum(xp.astype(keep, _index_dtype(xp)), axis=1)
            most = max(int(xp.max(counts)), 1)
            if most * _COMPACT_FRACTION <= self.width:
                if self.library == "numpy":
                    indices, kept = _kept_columns(keep, counts, most)
                else:
                    indices = top_m_indices(
                        xp, self.library, xp.where(keep, self.values, neg_inf), most
                    )
        if self.compact and indices is not None:
            if kept is None:
                kept = xp.take_along_axis(keep, indices, axis=1)
            self.values = xp.where(kept, xp.take_along_axis(self.values, indices, axis=1), neg_inf)
            if self.positions is None:
                self.positions = indices
            else:
                self.positions = xp.take_along_axis(self.positions, indices, axis=1)
            return
        self.values = xp.where(keep, self.values, neg_inf)

    def greedy_index(self):
        """Per row, the column of the maximum; among ties the lowest input position."""
        xp = self.xp
        if self.positions is None:
            return xp.argmax(self.values, axis=1)
        row_max = xp.max(self.values, axis=1, keepdims=True)
        largest = self.constant(np.iinfo(np.int32).max, dtype=self.positions.dtype)
        tied = xp.where(self.values == row_max, self.positions, largest)
        return xp.argmin(tied, axis=1)


def _kept_columns(keep, counts, most):
    """NumPy: the kept columns of each row, left-aligned in (rows, most), and a validity mask.

    A selection (argpartition) on a row that is mostly ``-inf`` degenerates on the
    ties; ``nonzero`` finds the kept columns in one pass instead.
    """
    row, column = np.nonzero(keep)
    starts = np.cumsum(counts) - counts
    rank = np.arange(column.size) - np.repeat(starts, counts)
    indices = np.zeros((keep.shape[0], most), dtype=np.intp)
    indices[row, rank] = column
    valid = np.arange(most)[None, :] < counts[:, None]
    return indices, valid


def _index_dtype(xp):
    """The library's default index dtype (int32 in JAX without x64)."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.int64
    return info().default_dtypes()["indexing"]


def _row_name(row: int, batch_shape) -> str:
    if len(batch_shape) == 0:
        return "the row"
    index = tuple(int(i) for i in np.unravel_index(row, batch_shape))
    return f"row {index[0] if len(index) == 1 else index}"


def _first_true(xp, mask) -> int | None:
    if not bool(xp.any(mask)):
        return None
    flags = mask
    if hasattr(flags, "detach"):
        flags = flags.detach().cpu()
    return int(np.flatnonzero(np.asarray(flags))[0])


class _Setup:
    """The validated input, as rows of shape (rows, n), and what is needed to reshape back."""

    def __init__(self, logits, axis, temperature, where, *, compact):
        temperature_array = None if isinstance(temperature, numbers.Real) else temperature
        xp = array_namespace(logits, where, temperature_array)
        library = library_of(xp)
        source = as_array(xp, logits)
        check_ndim("logits", source, 1, "the entries to draw from")
        plan = plan_dtypes(xp, source)
        axis = single_axis(axis, source.ndim)
        # Ranking needs no extra precision: float32 stays float32 until probabilities.
        rank_dtype = plan.result if _name(plan.result) in ("float32", "float64") else plan.work
        prob_dtype = xp.float64 if _has_float64(xp, source) else xp.float32
        values = xp.astype(source, rank_dtype)
        t = check_temperature(xp, temperature, values, (axis,), prob_dtype)
        keep = None if where is None else broadcast_mask(xp, where, values)

        values = xp.moveaxis(values, axis, -1)
        self.batch_shape = tuple(values.shape[:-1])
        self.n = values.shape[-1]
        self.count = math.prod(self.batch_shape)
        values = xp.reshape(values, (self.count, self.n))
        if keep is not None:
            keep = xp.reshape(xp.moveaxis(keep, axis, -1), (self.count, self.n))
            values = xp.where(keep, values, xp.asarray(-math.inf, dtype=rank_dtype))
        if not isinstance(t, float):
            row_shape = list(source.shape)
            row_shape[axis] = 1
            t = xp.broadcast_to(t, tuple(row_shape))
            t = xp.reshape(xp.moveaxis(t, axis, -1), (self.count, 1))
        self.xp, self.library, self.source, self.plan = xp, library, source, plan
        self.axis, self.temperature = axis, t
        self.rows = _Rows(xp, library, values, prob_dtype, compact)
        self.empty = None

    def check_rows(self, *, allow_empty):
        """NaN rows are an error; so are rows with no allowed entry unless ``allow_empty``."""
        xp, rows = self.xp, self.rows
        if self.count == 0:
            return
        if self.n == 0:
            if allow_empty:
                return
            raise ValueError(
                f"{_row_name(0, self.batch_shape)} has no entries to draw from (the axis is empty)"
            )
        row_max = xp.max(rows.values, axis=1, keepdims=True)
        bad = _first_true(xp, xp.isnan(row_max[:, 0]))
        if bad is not None:
            raise ValueError(f"{_row_name(bad, self.batch_shape)} of logits contains NaN")
        empty = row_max == rows.constant(-math.inf)
        bad = _first_true(xp, empty[:, 0])
        if bad is not None:
            if not allow_empty:
                raise ValueError(
                    f"{_row_name(bad, self.batch_shape)} has no allowed entry (all -inf or "
                    "masked out by where): nothing can be drawn from it"
                )
            self.empty = empty
        pos_inf = row_max == rows.constant(math.inf)
        if bool(xp.any(pos_inf)):
            # The limit of softmax: the +inf entries share the mass equally.
            at_inf = rows.values == rows.constant(math.inf)
            limit = xp.where(at_inf, rows.constant(0.0), rows.constant(-math.inf))
            rows.values = xp.where(pos_inf, limit, rows.values)
