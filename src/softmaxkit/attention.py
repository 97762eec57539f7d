"""Scaled dot-product attention computed block by block over the keys.

The softmax over the keys is carried with the online state (running maximum and
running sum per query, Milakov & Gimelshein 2018; the scheme of FlashAttention,
Dao et al. 2022): each block of keys rescales what was accumulated so far by
``exp(m_old - m_new)``. The full ``L_query x L_key`` score matrix is never formed
when ``block_size`` is set. Written once against the array namespace; NumPy and
PyTorch (autograd flows through) run the same code.
"""

from __future__ import annotations

import math

from ._lib._dtypes import plan_dtypes
from ._lib._namespace import array_namespace, as_array, device_of, is_numpy_namespace
from ._lib._typing import Array, ArrayLike, Int, Real
from ._lib._validation import check_boolean_array, check_ndim, check_positive_int, check_real

__all__ = ["attention"]


def _check_inputs(q, k, v):
    for name, array in (("q", q), ("k", k), ("v", v)):
        check_ndim(name, array, 2, "..., length, features")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same feature size, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of keys, got {k.shape[-2]} and {v.shape[-2]}"
        )


def attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    /,
    *,
    mask: ArrayLike | None = None,
    causal: bool = False,
    scale: Real | None = None,
    block_size: Int | None = None,
) -> Array:
    r"""Scaled dot-product attention, ``softmax(q @ k.T * scale) @ v``, over key blocks.

    Parameters
    ----------
    q : array, shape (..., L_query, E)
        Queries (NumPy or PyTorch, or anything of one array-API library).
    k : array, shape (..., L_key, E)
        Keys.
    v : array, shape (..., L_key, E_v)
        Values.
    mask : array of bool, optional
        True = attend (as PyTorch's boolean ``attn_mask``), broadcastable to
        ``(..., L_query, L_key)``.
    causal : bool, default False
        Query ``i`` attends keys ``j <= i`` (the top-left aligned mask of PyTorch's
        ``is_causal``); combined with ``mask`` when both are given.
    scale : float, optional
        Multiplies the scores; ``1 / sqrt(E)`` by default.
    block_size : int, optional
        Number of keys per block. The scores held at once are
        ``L_query x block_size``; by default all keys form one block.

    Returns
    -------
    array, shape (..., L_query, E_v)
        In the dtype and library of ``q``. A query whose keys are all masked
        gets zeros, not NaN.

    Notes
    -----
    float32 input is computed in float64 where the library has it, float16 and
    bfloat16 in float32, as in :func:`softmaxkit.softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> k = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> v = np.array([[1.0], [2.0], [3.0]])
    >>> smk.attention(q, k, v, block_size=2)
    array([[2.        ],
           [2.20333628]])
    >>> smk.attention(q, k, v, mask=np.array([[False] * 3, [True] * 3]))
    array([[0.        ],
           [2.20333628]])
    """
    xp = array_namespace(q, k, v, mask)
    q, k, v = (as_array(xp, a) for a in (q, k, v))
    _check_inputs(q, k, v)
    plan = plan_dtypes(xp, q, None)
    work = plan.work
    q_work, k_work, v_work = (xp.astype(a, work) for a in (q, k, v))
    n_query, n_key = q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    check_real("scale", scale)
    if block_size is None:
        block_size = max(n_key, 1)
    block_size = check_positive_int("block_size", block_size)
    if mask is not None:
        mask = _check_mask(xp, mask, q, n_query, n_key)

    device = device_of(xp, q)
    mask_batch = () if mask is None else mask.shape[:-2]
    batch = _broadcast_batch(q.shape[:-2], k.shape[:-2], v.shape[:-2], mask_batch)
    neg_inf = xp.asarray(-math.inf, dtype=work, device=device)
    zero = xp.asarray(0.0, dtype=work, device=device)
    running_max = xp.full(batch + (n_query, 1), -math.inf, dtype=work, device=device)
    running_sum = xp.zeros(batch + (n_query, 1), dtype=work, device=device)
    output = xp.zeros(batch + (n_query, v.shape[-1]), dtype=work, device=device)
    query_index = xp.reshape(xp.arange(n_query, device=device), (n_query, 1))
    for start in range(0, n_key, block_size):
        stop = min(start + block_size, n_key)
        if causal and start >= n_query:
            break  # every later key is masked for every query
        scores = xp.matmul(q_work, xp.matrix_transpose(k_work[..., start:stop, :])) * scale
        allowed = None
        if causal:
            key_index = xp.reshape(xp.arange(start, stop, device=device), (1, stop - start))
            allowed = key_index <= query_index
        if mask is not None:
            block_mask = mask if mask.shape[-1] == 1 else mask[..., start:stop]
            allowed = block_mask if allowed is None else (allowed & block_mask)
        if allowed is not None:
            scores = xp.where(allowed, scores, neg_inf)
        block_max = xp.max(scores, axis=-1, keepdims=True)
        new_max = xp.maximum(running_max, block_max)
        # A query with no key allowed so far keeps a finite shift: no inf - inf.
        shift = xp.where(new_max == neg_inf, zero, new_max)
        rescale = xp.exp(running_max - shift)
        weights = xp.exp(scores - shift)
        running_sum = running_sum * rescale + xp.sum(weights, axis=-1, keepdims=True)
        output = output * rescale + xp.matmul(weights, v_work[..., start:stop, :])
        running_max = new_max
    one = xp.asarray(1.0, dtype=work, device=device)
    output = output / xp.where(running_sum == zero, one, running_sum)
    output = xp.astype(output, plan.result)
    if is_numpy_namespace(xp):
        import numpy as np

        return np.asarray(output)
    return output


def _check_mask(xp, mask, q, n_query, n_key):
    """``mask`` as a boolean array of at least 2 dimensions that broadcasts to the scores."""
    mask = check_boolean_array("mask", as_array(xp, mask, like=q), "True = attend")
    while mask.ndim < 2:
        mask = xp.reshape(mask, (1,) + tuple(mask.shape))
    if mask.shape[-1] not in (1, n_key) or mask.shape[-2] not in (1, n_query):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to (..., {n_query}, {n_key})"
        )
    return mask


def _broadcast_batch(*shapes):
    ndim = max(len(s) for s in shapes)
    result = []
    for dims in zip(*((1,) * (ndim - len(s)) + tuple(s) for s in shapes), strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"batch shapes of q, k and v do not broadcast: {shapes}")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)
