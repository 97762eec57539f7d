"""Drawing indices: :func:`sample`, by the inverse CDF or the Gumbel-max trick, with or
without replacement."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from .._lib._namespace import device_of
from .._lib._random import Randomness, top_m_indices
from .._lib._typing import Array, ArrayLike, FilterOrder, Int, Real, Seed, Temperature
from .._lib._validation import check_choice, check_flag, check_int
from ._cdf_search import _inverse_cdf
from ._filters import _run
from ._numpy_draws import _kept_softmax_draws, _numpy_draws
from ._options import FILTERS, _validated
from ._rows import _first_true, _index_dtype, _row_name, _Rows, _Setup


def sample(
    logits: ArrayLike,
    /,
    *,
    axis: Int = -1,
    num_samples: Int | None = None,
    replace: bool = True,
    temperature: Temperature = 1.0,
    top_k: Int | None = None,
    top_p: Real | None = None,
    min_p: Real | None = None,
    typical_p: Real | None = None,
    where: ArrayLike | None = None,
    order: FilterOrder = FILTERS,
    min_tokens_to_keep: Int = 1,
    method: Literal["inverse_cdf", "gumbel"] = "inverse_cdf",
    rng: Seed = None,
) -> Array:
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
    order, options = _validated(
        order, temperature, top_k, top_p, min_p, typical_p, min_tokens_to_keep
    )
    check_choice("method", method, ("inverse_cdf", "gumbel"))
    if num_samples is not None:
        num_samples = check_int("num_samples", num_samples, low=0)
    replace = check_flag("replace", replace)
    unfiltered = all(options[name] is None for name in ("top_p", "min_p", "typical_p"))
    if replace and unfiltered:
        top_k = options["top_k"]
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
    rows = _run(setup, order, options)
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
