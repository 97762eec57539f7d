"""The divergences: :func:`kl_divergence` and :func:`entropy`."""

from __future__ import annotations

import math

import numpy as np

from .._lib._dtypes import plan_dtypes
from .._lib._namespace import (
    array_namespace,
    as_array,
    is_numpy_namespace,
)
from .._lib._shifted_exp import reduce_sum
from .._lib._typing import Array, ArrayLike, Axis
from .._lib._validation import (
    normalize_axis,
)
from .._softmax import log_softmax, softmax
from ._checks import _overflow_is_inf


@_overflow_is_inf
def kl_divergence(p_logits: ArrayLike, q_logits: ArrayLike, /, axis: Axis = -1) -> Array:
    r"""Kullback-Leibler divergence ``KL(p || q)`` between the softmaxes of two logit arrays.

    Parameters
    ----------
    p_logits, q_logits : array_like
        Logits of the two distributions, of the same shape (or broadcastable), any
        supported array library. ``-inf`` entries have probability 0.
    axis : int, tuple of int or None, default -1
        The axis (axes) of the distribution, as in :func:`~softmaxkit.softmax`.

    Returns
    -------
    array
        ``sum(p * (log p - log q))`` over ``axis``, >= 0; ``inf`` where ``p`` has
        mass on a class where ``q`` has none.

    Notes
    -----
    Exact at ``-inf`` entries: a class where ``p`` is 0 adds nothing (``0 log 0 =
    0``), whatever ``q`` is there. Both log-probabilities come from the core's
    :func:`~softmaxkit.log_softmax`, and ``p`` from :func:`~softmaxkit.softmax`.

    See Also
    --------
    entropy, cross_entropy

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.kl_divergence([0.0, 0.0], [0.0, float("-inf")]))
    inf
    >>> float(smk.kl_divergence([0.0, float("-inf")], [0.0, 0.0]))
    0.6931471805599453
    """
    xp = array_namespace(p_logits, q_logits)
    p_source = as_array(xp, p_logits)
    q_source = as_array(xp, q_logits)
    shape = tuple(np.broadcast_shapes(tuple(p_source.shape), tuple(q_source.shape)))
    if tuple(p_source.shape) != shape:
        p_source = xp.broadcast_to(p_source, shape)
    if tuple(q_source.shape) != shape:
        q_source = xp.broadcast_to(q_source, shape)
    plan = plan_dtypes(xp, p_source)
    log_p = xp.astype(log_softmax(p_source, axis, dtype=plan.work), plan.work)
    log_q = xp.astype(log_softmax(q_source, axis, dtype=plan.work), plan.work)
    p = xp.astype(softmax(p_source, axis, dtype=plan.work), plan.work)
    neg_inf = -math.inf
    support = ~(log_p == neg_inf)
    zero = xp.zeros_like(log_p)
    unreachable = support & (log_q == neg_inf)
    difference = xp.where(support & ~unreachable, log_p, zero) - xp.where(
        support & ~unreachable, log_q, zero
    )
    terms = xp.where(unreachable, zero + math.inf, p * difference)
    axes = normalize_axis(axis, len(shape))
    result = reduce_sum(xp, terms, axes, keepdims=False)
    result = xp.astype(result, plan.result)
    return np.asarray(result) if is_numpy_namespace(xp) else result


@_overflow_is_inf
def entropy(logits: ArrayLike, /, axis: Axis = -1) -> Array:
    r"""Shannon entropy (in nats) of the softmax of ``logits``.

    Parameters
    ----------
    logits : array_like
        Logits, any supported array library; ``-inf`` entries have probability 0.
    axis : int, tuple of int or None, default -1
        The axis (axes) of the distribution.

    Returns
    -------
    array
        ``-sum(p log p)`` over ``axis``, with ``0 log 0 = 0``.

    Notes
    -----
    ``log p`` and ``p`` come from the core's :func:`~softmaxkit.log_softmax` and
    :func:`~softmaxkit.softmax`; a row of ``k`` equal finite logits and ``-inf``
    elsewhere has entropy ``log(k)``.

    See Also
    --------
    kl_divergence

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.entropy([0.0, 0.0, float("-inf")]))
    0.6931471805599453
    """
    xp = array_namespace(logits)
    source = as_array(xp, logits)
    plan = plan_dtypes(xp, source)
    log_p = xp.astype(log_softmax(source, axis, dtype=plan.work), plan.work)
    p = xp.astype(softmax(source, axis, dtype=plan.work), plan.work)
    support = ~(log_p == -math.inf)
    terms = xp.where(support, p * xp.where(support, log_p, xp.zeros_like(log_p)), 0 * p)
    axes = normalize_axis(axis, source.ndim)
    result = -reduce_sum(xp, terms, axes, keepdims=False)
    result = xp.astype(result, plan.result)
    return np.asarray(result) if is_numpy_namespace(xp) else result
