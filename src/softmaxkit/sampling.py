"""Drawing indices from logits: temperature, top-k, top-p, min-p, typical-p, Gumbel.

Written once against the array namespace ``xp``; NumPy, PyTorch and JAX arrays are
accepted, and the random numbers come from each library's own generator.

Every filter keeps a set of entries and removes the others (their logit becomes
``-inf``); the filters run in the order given by ``order``, each one on the
probabilities left by the previous ones (renormalised), as Hugging Face's logits
warpers do, and each keeps at least ``min_tokens_to_keep`` entries. The rows are
held as "candidates": once a filter has kept only a few entries of a long row
(``top_k=50`` of 128,256), the rest of the work runs on those entries alone, so no
step sorts the whole vocabulary.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from . import _kernels
from ._lib._dtypes import _has_float64, _name, plan_dtypes
from ._lib._namespace import array_namespace, as_array, device_of
from ._lib._random import (
    Randomness,
    library_of,
    searchsorted_right,
    stop_gradient,
    top_m_indices,
)
from ._lib._validation import broadcast_mask, check_temperature, normalize_axis
from ._softmax import log_softmax, softmax

__all__ = ["sample", "filter_logits", "gumbel_softmax"]

FILTERS = ("temperature", "top_k", "top_p", "min_p", "typical_p")

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


# ---------------------------------------------------------------- arguments


def _check_order(order, options):
    if isinstance(order, str) or not isinstance(order, (tuple, list)):
        raise TypeError(f"order must be a tuple of filter names, got {order!r}")
    for name in order:
        if name not in FILTERS:
            raise ValueError(
                f"order contains {name!r}, which is not one of {', '.join(map(repr, FILTERS))}"
            )
    if len(set(order)) != len(order):
        raise ValueError(f"order contains a repeated entry: {tuple(order)!r}")
    for name, active in options.items():
        if active and name not in order:
            raise ValueError(f"{name} is set, but {name!r} is missing from order={tuple(order)!r}")
    return tuple(order)


def _check_count(name, value, *, least):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if value < least:
        raise ValueError(f"{name} must be >= {least}, got {value}")
    return value


def _check_top_k(top_k):
    """The number of entries top-k keeps, or None; 0 means no top-k filter, as in Hugging Face."""
    if top_k is None:
        return None
    value = _check_count("top_k", top_k, least=0)
    return None if value == 0 else value


def _check_fraction(name, value, *, allow_zero, neutral):
    """The fraction, or None where it is ``neutral`` (the value that removes nothing)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return None if value == neutral else value


def _check_axis(axis, ndim):
    if isinstance(axis, bool):
        raise TypeError(f"axis must be an int for sampling, got {axis!r}")
    try:
        operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int for sampling, got {axis!r}") from None
    return normalize_axis(axis, ndim)[0]


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
        if source.ndim == 0:
            raise ValueError("logits must have at least one dimension (the entries to draw from)")
        plan = plan_dtypes(xp, source)
        axis = _check_axis(axis, source.ndim)
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


# ---------------------------------------------------------------- filters


def _apply_temperature(rows: _Rows, t):
    xp = rows.xp
    if isinstance(t, float):
        if t == 1.0:
            return
        if t == 0.0:
            index = rows.greedy_index()[:, None]
            columns = xp.arange(rows.width, device=device_of(xp, rows.values))
            rows.restrict(columns[None, :] == index, indices=index)
            rows.values = xp.where(rows.finite(), rows.constant(0.0), rows.values)
            return
        if t == math.inf:
            rows.values = xp.where(rows.finite(), rows.constant(0.0), rows.values)
            return
        rows.scale = t
        return
    greedy_rows = t == xp.asarray(0.0, dtype=t.dtype, device=device_of(xp, t))
    uniform_rows = t == xp.asarray(math.inf, dtype=t.dtype, device=device_of(xp, t))
    if not bool(xp.any(greedy_rows | uniform_rows)):
        rows.scale = t
        return
    values = xp.astype(rows.values, rows.prob_dtype)
    rows.values = values
    zero, neg_inf = rows.constant(0.0), rows.constant(-math.inf)
    columns = xp.arange(rows.width, device=device_of(xp, values))
    greedy_keep = columns[None, :] == rows.greedy_index()[:, None]
    greedy = xp.where(greedy_keep, zero, neg_inf)
    uniform = xp.where(rows.finite(), zero, neg_inf)
    rows.values = xp.where(greedy_rows, greedy, xp.where(uniform_rows, uniform, values))
    rows.scale = xp.where(greedy_rows | uniform_rows, rows.constant(1.0), t)


def _top_k(rows: _Rows, k: int):
    if k >= rows.width:
        return
    xp = rows.xp
    values = rows.values
    indices = top_m_indices(xp, rows.library, values, k)
    kth = xp.min(xp.take_along_axis(values, indices, axis=1), axis=1, keepdims=True)
    # Ties with the k-th largest value are kept: which of them to drop is arbitrary.
    keep = (values >= kth) & rows.finite()
    counts = xp.sum(xp.astype(keep, _index_dtype(xp)), axis=1)
    if bool(xp.all(counts <= k)):
        rows.restrict(keep, indices=indices)
    else:
        rows.restrict(keep)


def _with_the_largest(rows: _Rows, keep, count: int):
    """``keep``, and the ``count`` largest logits of each row with the entries tied with them.

    Hugging Face's top-p and min-p warpers keep the ``min_tokens_to_keep`` entries of
    largest logit (probability) whatever their probability; they are ranked by logit
    here too, since probabilities far below the maximum all round to 0. The maximum
    is always kept by both filters, so a count of 1 adds nothing.
    """
    if count <= 1:
        return keep
    xp = rows.xp
    finite = rows.finite()
    if count >= rows.width:
        return keep | finite
    values = rows.values
    indices = top_m_indices(xp, rows.library, values, count)
    kth = xp.min(xp.take_along_axis(values, indices, axis=1), axis=1, keepdims=True)
    return keep | ((values >= kth) & finite)


def _exclusive_cumsum(xp, a):
    total = xp.cumulative_sum(a, axis=1)
    return xp.concat([xp.zeros_like(total[:, :1]), total[:, :-1]], axis=1)


def _cut(xp, sorted_key_values, sorted_prob, mass, least=1):
    """The key value of the last entry needed for the cumulative mass to reach ``mass``.

    At least ``least`` entries are counted (all of them if fewer).
    """
    before = _exclusive_cumsum(xp, sorted_prob)
    count = xp.sum(xp.astype(before < mass, _index_dtype(xp)), axis=1, keepdims=True)
    width = sorted_prob.shape[1]
    count = xp.clip(count, min(least, width), width)
    return xp.take_along_axis(sorted_key_values, count - 1, axis=1)


def _top_p_threshold(rows: _Rows, prob, mass):
    """The smallest probability kept by top-p (every entry at least as likely is kept)."""
    xp = rows.xp
    width = prob.shape[1]
    if rows.library == "numpy":
        # Partial selection: the mass is usually reached within a few hundred entries.
        most = 1024
        while 4 * most < width:
            top = np.partition(prob, width - most, axis=1)[:, width - most :]
            top = np.sort(top, axis=1)[:, ::-1]
            if bool(np.all(np.sum(top, axis=1, keepdims=True) >= mass)):
                return _cut(xp, top, top, mass)
            most *= 16
    ordered = xp.flip(xp.sort(prob, axis=1), axis=1)
    return _cut(xp, ordered, ordered, mass)


def _top_p(rows: _Rows, mass: float, least: int):
    xp = rows.xp
    z = rows.scaled()
    # Unnormalised weights exp(z - max) in float64 rank the entries as the
    # probabilities do; the mass target is scaled by their sum instead of dividing.
    row_max = xp.max(z, axis=1, keepdims=True)
    row_max = xp.where(row_max == rows.constant(-math.inf), rows.constant(0.0), row_max)
    weight = xp.exp(z - row_max)
    target = mass * xp.sum(weight, axis=1, keepdims=True)
    threshold = _top_p_threshold(rows, weight, target)
    rows.restrict(_with_the_largest(rows, (weight >= threshold) & rows.finite(), least))


def _min_p(rows: _Rows, fraction: float, least: int):
    xp = rows.xp
    z = rows.scaled()
    row_max = xp.max(z, axis=1, keepdims=True)
    row_max = xp.where(row_max == rows.constant(-math.inf), rows.constant(0.0), row_max)
    # p / p_max = exp(z - z_max): no normalisation needed.
    relative = xp.exp(z - row_max)
    rows.restrict(_with_the_largest(rows, (relative >= fraction) & rows.finite(), least))


def _typical_p(rows: _Rows, mass: float, least: int):
    xp = rows.xp
    z = rows.scaled()
    finite = rows.finite()
    zero, pos_inf = rows.constant(0.0), rows.constant(math.inf)
    log_prob = log_softmax(z, axis=1)
    safe_log_prob = xp.where(finite, log_prob, zero)
    prob = xp.exp(xp.where(finite, log_prob, rows.constant(-math.inf)))
    entropy = -xp.sum(prob * safe_log_prob, axis=1, keepdims=True)
    distance = xp.where(finite, xp.abs(-safe_log_prob - entropy), pos_inf)
    order = xp.argsort(distance, axis=1, stable=True)
    sorted_distance = xp.take_along_axis(distance, order, axis=1)
    sorted_prob = xp.take_along_axis(prob, order, axis=1)
    # As Hugging Face's TypicalLogitsWarper, the ``least`` entries kept whatever the
    # mass are the most typical ones (the first in this order), not the most likely.
    threshold = _cut(xp, sorted_distance, sorted_prob, mass, least)
    rows.restrict((distance <= threshold) & finite)


def _run(setup: _Setup, order, *, top_k, top_p, min_p, typical_p, min_tokens_to_keep):
    rows = setup.rows
    least = min_tokens_to_keep
    steps = {
        "temperature": lambda: _apply_temperature(rows, setup.temperature),
        # top_k already counts min_tokens_to_keep (see _validated).
        "top_k": lambda: top_k is not None and _top_k(rows, top_k),
        "top_p": lambda: top_p is not None and _top_p(rows, top_p, least),
        "min_p": lambda: min_p is not None and _min_p(rows, min_p, least),
        "typical_p": lambda: typical_p is not None and _typical_p(rows, typical_p, least),
    }
    if setup.count == 0 or setup.n == 0:
        return rows
    for name in order:
        steps[name]()
    rows.scaled()
    return rows


def _validated(order, temperature, top_k, top_p, min_p, typical_p, min_tokens_to_keep):
    """The checked options; those set to the value that removes nothing become None.

    As in Hugging Face's ``generate()``, ``top_k=0``, ``top_p=1`` and ``typical_p=1``
    mean no filter (and so does ``min_p=0``, which removes nothing), whether or not
    ``order`` names them. ``top_k`` is returned as ``max(top_k, min_tokens_to_keep)``,
    as ``TopKLogitsWarper`` takes it.
    """
    min_tokens_to_keep = _check_count("min_tokens_to_keep", min_tokens_to_keep, least=1)
    top_k = _check_top_k(top_k)
    if top_k is not None:
        top_k = max(top_k, min_tokens_to_keep)
    top_p = _check_fraction("top_p", top_p, allow_zero=False, neutral=1.0)
    min_p = _check_fraction("min_p", min_p, allow_zero=True, neutral=0.0)
    typical_p = _check_fraction("typical_p", typical_p, allow_zero=False, neutral=1.0)
    is_default_temperature = isinstance(temperature, numbers.Real) and temperature == 1
    order = _check_order(
        order,
        {
            "temperature": not is_default_temperature,
            "top_k": top_k is not None,
            "top_p": top_p is not None,
            "min_p": min_p is not None,
            "typical_p": typical_p is not None,
        },
    )
    return order, top_k, top_p, min_p, typical_p, min_tokens_to_keep


# ---------------------------------------------------------------- public


def filter_logits(
    logits,
    /,
    *,
    axis=-1,
    temperature=1.0,
    top_k=None,
    top_p=None,
    min_p=None,
    typical_p=None,
    where=None,
    order=FILTERS,
    min_tokens_to_keep=1,
):
    """The logits that :func:`sample` draws from: divided by the temperature, filtered.

    Parameters
    ----------
    logits : array_like
        Scores, NumPy, PyTorch or JAX (or Python lists).
    axis : int, default -1
        The axis holding the entries of one row.
    temperature : float or array, default 1.0
        The logits are divided by it; a scalar >= 0 or one value per row (length 1
        along ``axis``). ``0`` keeps only the maximum (the lowest index among ties),
        ``inf`` makes every allowed entry equally likely.
    top_k : int >= 0, optional
        Keep the ``top_k`` largest entries; entries tied with the k-th largest
        are kept too. ``0`` means no top-k filter (as in Hugging Face).
    top_p : float in (0, 1], optional
        Keep the smallest set of most likely entries whose probability reaches
        ``top_p`` (at least one entry; ties with the last one kept). ``1`` means
        no top-p filter.
    min_p : float in [0, 1], optional
        Keep the entries with probability >= ``min_p`` times the largest one.
        ``0`` means no min-p filter.
    typical_p : float in (0, 1], optional
        Locally typical sampling (Meister et al. 2022): keep the entries whose
        surprisal is closest to the row's entropy, up to a mass of ``typical_p``.
        ``1`` means no typical-p filter.
    where : array of bool, optional
        Keep-mask broadcastable to ``logits``; False entries are removed first.
    order : tuple of str, default ("temperature", "top_k", "top_p", "min_p", "typical_p")
        The order in which the steps run; each filter works on the probabilities
        left by the steps before it, renormalised. Every option that is set must
        be named (``top_k=0``, ``top_p=1``, ``min_p=0`` and ``typical_p=1`` are
        not set).
    min_tokens_to_keep : int >= 1, default 1
        Each filter keeps at least this many of the entries the steps before it
        left (all of them if fewer), as Hugging Face's logits warpers do: top-k
        keeps ``max(top_k, min_tokens_to_keep)``; top-p and min-p also keep the
        ``min_tokens_to_keep`` largest logits; typical-p, the
        ``min_tokens_to_keep`` most typical entries. Entries tied with the last
        one so kept are kept too.

    Returns
    -------
    array
        Of the shape, library and floating dtype of ``logits``: the logits divided
        by the temperature where kept, ``-inf`` where removed (at temperature 0 the
        kept entry is 0, at ``inf`` every kept entry is 0). A row with no allowed
        entry stays all ``-inf``.

    Raises
    ------
    ValueError
        For an option out of range (``min_tokens_to_keep < 1`` included), an
        unknown or repeated name in ``order``, or a row containing NaN.

    See Also
    --------
    sample

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.filter_logits([1.0, 3.0, 2.0, 3.0], top_k=2)
    array([-inf,   3., -inf,   3.])
    >>> smk.filter_logits([2.0, 1.0, 0.0], temperature=2.0, top_p=0.6)
    array([ 1. ,  0.5, -inf])
    >>> smk.filter_logits([4.0, 1.0, 0.0, -1.0], top_p=0.5, min_tokens_to_keep=2)
    array([  4.,   1., -inf, -inf])
    """
    order, top_k, top_p, min_p, typical_p, min_tokens_to_keep = _validated(
        order, temperature, top_k, top_p, min_p, typical_p, min_tokens_to_keep
    )
    setup = _Setup(logits, axis, temperature, where, compact=False)
    setup.check_rows(allow_empty=True)
    rows = _run(
        setup,
        order,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        typical_p=typical_p,
        min_tokens_to_keep=min_tokens_to_keep,
    )
    xp = setup.xp
    values = rows.values
    if setup.empty is not None:
        values = xp.where(setup.empty, rows.constant(-math.inf), values)
    values = xp.reshape(values, setup.batch_shape + (setup.n,))
    values = xp.moveaxis(values, -1, setup.axis)
    result = xp.astype(values, setup.plan.result)
    return np.asarray(result) if setup.library == "numpy" else result


def sample(
    logits,
    /,
    *,
    axis=-1,
    num_samples=None,
    replace=True,
    temperature=1.0,
    top_k=None,
    top_p=None,
    min_p=None,
    typical_p=None,
    where=None,
    order=FILTERS,
    min_tokens_to_keep=1,
    method="inverse_cdf",
    rng=None,
):
    """Draw indices from the softmax of ``logits``, after temperature and filters.

    Parameters
    ----------
    logits : array_like
        Scores, NumPy, PyTorch or JAX (or Python lists).
    axis : int, default -1
        The axis holding the entries of one row.
    num_samples : int, optional
        Draws per row. By default one draw and no extra axis.
    replace : bool, default True
        With ``False`` the draws of a row are distinct (Gumbel-top-k, whatever
        ``method``), in the order they would be drawn one after another without
        replacement.
    temperature, top_k, top_p, min_p, typical_p, where, order, min_tokens_to_keep
        As in :func:`filter_logits`.
    method : {"inverse_cdf", "gumbel"}, default "inverse_cdf"
        ``inverse_cdf`` draws one uniform number per sample and searches the
        cumulative sum; ``gumbel`` takes ``argmax(z + G)`` with Gumbel noise ``G``
        (one per entry and sample). Both are exact.
    rng : optional
        NumPy: a ``numpy.random.Generator``, an int seed or None. PyTorch: a
        ``torch.Generator`` on the tensor's device, an int seed or None (the
        global generator). JAX: a PRNG key, required. The same seed gives the same
        result.

    Returns
    -------
    array of int
        Indices along ``axis``, of the batch shape (``logits`` without ``axis``),
        followed by ``(num_samples,)`` when it is given.

    Raises
    ------
    ValueError
        For a row with no allowed entry (all ``-inf`` or masked out) or with
        NaN, naming the row; for ``num_samples`` larger than the allowed entries
        of a row when ``replace=False``; for options out of range.
    TypeError
        For an ``rng`` of the wrong kind (and a missing JAX key).

    Notes
    -----
    An entry whose probability is 0 after temperature, masking and filtering is
    never drawn. ``temperature=0`` is greedy and picks the lowest index among
    tied maxima.

    Precision: for NumPy input, drawn by ``inverse_cdf`` with replacement at a
    temperature that is finite and > 0, rows longer than 4,096 entries (with a
    few draws per row) are drawn without writing their probabilities: one pass
    of the compiled kernel gives each row's maximum and the float64 sums of
    ``exp`` over blocks of entries
    (each term within about 1e-8 relative for float32 input, 1e-16 for float64),
    a float64 cumulative sum of the block sums picks the block, and the entry is
    found from the float64 ``exp`` of that block's entries. Shorter rows (and the
    entries kept after filtering) take their probabilities from one pass of the
    compiled :func:`softmax`, in the input's dtype (float32 for float16 and
    bfloat16): for float32 input each is within a few float32 ulp (about 3e-7
    relative) rather than about 1e-16, and one below float32's normal range
    (about 1e-38) may become 0 and is then never drawn. The filters decide in
    float64, and the cumulative sums are float64, on every path; PyTorch and JAX
    input, ``gumbel`` and ``replace=False`` compute the probabilities in float64
    where the library has it. The draws follow the computed probabilities to within rounding.

    See Also
    --------
    filter_logits, gumbel_softmax

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.sample([[1.0, 5.0, 5.0], [0.0, 0.0, 9.0]], temperature=0)
    array([1, 2])
    >>> smk.sample([0.0, float("-inf"), 0.0], num_samples=8, rng=0)
    array([2, 0, 0, 0, 2, 2, 2, 2])
    """
    order, top_k, top_p, min_p, typical_p, min_tokens_to_keep = _validated(
        order, temperature, top_k, top_p, min_p, typical_p, min_tokens_to_keep
    )
    if method not in ("inverse_cdf", "gumbel"):
        raise ValueError(f"method must be 'inverse_cdf' or 'gumbel', got {method!r}")
    if num_samples is not None:
        if isinstance(num_samples, bool):
            raise TypeError(f"num_samples must be an int, got {num_samples!r}")
        try:
            num_samples = operator.index(num_samples)
        except TypeError:
            raise TypeError(f"num_samples must be an int, got {num_samples!r}") from None
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be True or False, got {replace!r}")
    if replace and top_p is None and min_p is None and typical_p is None:
        drawn = _numpy_draws(logits, axis, temperature, where, top_k, num_samples, method, rng)
        if drawn is not None:
            return drawn
    setup = _Setup(logits, axis, temperature, where, compact=True)
    xp = setup.xp
    randomness = Randomness(setup.library, rng, setup.source)
    draws = 1 if num_samples is None else num_samples
    out_shape = setup.batch_shape + (() if num_samples is None else (num_samples,))
    if setup.count == 0 or draws == 0:
        return xp.zeros(out_shape, dtype=_index_dtype(xp), device=device_of(xp, setup.source))
    setup.check_rows(allow_empty=False)
    rows = _run(
        setup,
        order,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        typical_p=typical_p,
        min_tokens_to_keep=min_tokens_to_keep,
    )
    z = rows.values
    if not replace:
        finite = rows.finite()
        allowed = xp.sum(xp.astype(finite, _index_dtype(xp)), axis=1)
        short = _first_true(xp, allowed < draws)
        if short is not None:
            raise ValueError(
                f"num_samples={draws} without replacement, but "
                f"{_row_name(short, setup.batch_shape)} has only {int(allowed[short])} "
                "allowed entries"
            )
        choice = _gumbel_top_k(rows, z, finite, draws, randomness)
    elif method == "gumbel":
        choice = _gumbel_max(rows, z, rows.finite(), draws, randomness)
    else:
        choice = _kept_softmax_draws(setup, rows, draws, randomness)
        if choice is None:
            choice = _inverse_cdf(rows, z, draws, randomness)
    if rows.positions is not None:
        choice = xp.take_along_axis(rows.positions, choice, axis=1)
    choice = xp.astype(choice, _index_dtype(xp))
    result = xp.reshape(choice, out_shape)
    return np.asarray(result) if setup.library == "numpy" else result


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


def _gumbel_max(rows: _Rows, z, finite, draws, randomness):
    xp = rows.xp
    count, width = z.shape
    neg_inf = rows.constant(-math.inf)
    chunk = max(1, (1 << 22) // max(1, count * width))
    parts = []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        noise = randomness.gumbel((count, size, width), z.dtype)
        keys = xp.where(finite[:, None, :], z[:, None, :] + noise, neg_inf)
        parts.append(xp.argmax(keys, axis=2))
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)


def _gumbel_top_k(rows: _Rows, z, finite, draws, randomness):
    """Distinct draws: the ``draws`` largest of ``z + G`` (Kool, van Hoof & Welling 2019)."""
    xp = rows.xp
    noise = randomness.gumbel(tuple(z.shape), z.dtype)
    keys = xp.where(finite, z + noise, rows.constant(-math.inf))
    chosen = top_m_indices(xp, rows.library, keys, draws)
    chosen_keys = xp.take_along_axis(keys, chosen, axis=1)
    ranking = xp.argsort(-chosen_keys, axis=1, stable=True)
    return xp.take_along_axis(chosen, ranking, axis=1)


def gumbel_softmax(logits, /, *, tau=1.0, hard=False, axis=-1, rng=None):
    """A relaxed one-hot sample: ``softmax((logits + G) / tau)`` with Gumbel noise ``G``.

    Parameters
    ----------
    logits : array_like
        Scores, NumPy, PyTorch or JAX (or Python lists).
    tau : float, default 1.0
        The temperature of the relaxation, >= 0.
    hard : bool, default False
        Return the one-hot vector of the argmax; for PyTorch and JAX the gradient
        is that of the soft sample (the straight-through estimator).
    axis : int, default -1
        The axis of the categories.
    rng : optional
        As in :func:`sample`. For PyTorch the noise is drawn as
        ``torch.nn.functional.gumbel_softmax`` draws it, so the same seed gives
        the same sample.

    Returns
    -------
    array
        Of the shape, library and floating dtype of ``logits``; each row sums to 1.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> y = smk.gumbel_softmax([1.0, 2.0, 3.0], tau=0.5, rng=0)
    >>> round(float(y.sum()), 12)
    1.0
    >>> smk.gumbel_softmax([1.0, 2.0, 3.0], hard=True, rng=0)
    array([0., 0., 1.])
    """
    xp = array_namespace(logits)
    library = library_of(xp)
    source = as_array(xp, logits)
    plan = plan_dtypes(xp, source)
    if source.ndim == 0:
        raise ValueError("logits must have at least one dimension (the categories)")
    axis = _check_axis(axis, source.ndim)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be True or False, got {hard!r}")
    values = xp.astype(source, plan.result)
    noise = Randomness(library, rng, source).gumbel(tuple(values.shape), plan.result)
    soft = softmax(values + noise, axis=axis, temperature=tau)
    if not hard:
        return np.asarray(soft) if library == "numpy" else soft
    index = xp.argmax(soft, axis=axis, keepdims=True)
    shape = [1] * source.ndim
    shape[axis] = source.shape[axis]
    columns = xp.reshape(xp.arange(source.shape[axis], device=device_of(xp, source)), shape)
    one_hot = xp.astype(columns == index, soft.dtype)
    result = one_hot - stop_gradient(library, soft) + soft
    return np.asarray(result) if library == "numpy" else result
