"""The filters: temperature, top-k, top-p, min-p and typical-p, and :func:`filter_logits`.

Each filter keeps a set of entries of :class:`._rows._Rows` and removes the others
(their logit becomes ``-inf``), on the probabilities left by the filters before it.
"""

from __future__ import annotations

import math

import numpy as np

from .._lib._namespace import device_of
from .._lib._random import top_m_indices
from .._lib._typing import Array, ArrayLike, FilterOrder, Int, Real, Temperature
from .._softmax import log_softmax
from ._options import FILTERS, _validated
from ._rows import _index_dtype, _Rows, _Setup


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


def _relative(rows: _Rows, z):
    """``exp(z - max)`` per row (a row with no allowed entry stays all 0)."""
    xp = rows.xp
    row_max = xp.max(z, axis=1, keepdims=True)
    row_max = xp.where(row_max == rows.constant(-math.inf), rows.constant(0.0), row_max)
    return xp.exp(z - row_max)


def _top_p(rows: _Rows, mass: float, least: int):
    xp = rows.xp
    z = rows.scaled()
    # Unnormalized weights exp(z - max) in float64 rank the entries as the
    # probabilities do; the mass target is scaled by their sum instead of dividing.
    weight = _relative(rows, z)
    target = mass * xp.sum(weight, axis=1, keepdims=True)
    threshold = _top_p_threshold(rows, weight, target)
    rows.restrict(_with_the_largest(rows, (weight >= threshold) & rows.finite(), least))


def _min_p(rows: _Rows, fraction: float, least: int):
    z = rows.scaled()
    # p / p_max = exp(z - z_max): no normalization needed.
    relative = _relative(rows, z)
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


def _run(setup: _Setup, order, options):
    """The steps of ``order`` on ``setup.rows``, with the ``options`` of :func:`._validated`."""
    rows = setup.rows
    least = options["min_tokens_to_keep"]
    top_k, top_p = options["top_k"], options["top_p"]
    min_p, typical_p = options["min_p"], options["typical_p"]
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


def filter_logits(
    logits: ArrayLike,
    /,
    *,
    axis: Int = -1,
    temperature: Temperature = 1.0,
    top_k: Int | None = None,
    top_p: Real | None = None,
    min_p: Real | None = None,
    typical_p: Real | None = None,
    where: ArrayLike | None = None,
    order: FilterOrder = FILTERS,
    min_tokens_to_keep: Int = 1,
) -> Array:
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
        left by the steps before it, renormalized. Every option that is set must
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
    order, options = _validated(
        order, temperature, top_k, top_p, min_p, typical_p, min_tokens_to_keep
    )
    setup = _Setup(logits, axis, temperature, where, compact=False)
    setup.check_rows(allow_empty=True)
    rows = _run(setup, order, options)
    xp = setup.xp
    values = rows.values
    if setup.empty is not None:
        values = xp.where(setup.empty, rows.constant(-math.inf), values)
    values = xp.reshape(values, setup.batch_shape + (setup.n,))
    values = xp.moveaxis(values, -1, setup.axis)
    result = xp.astype(values, setup.plan.result)
    return np.asarray(result) if setup.library == "numpy" else result
