"""The Gumbel-softmax relaxation (Jang, Gu & Poole 2017; Maddison et al. 2017)."""

from __future__ import annotations

import numpy as np

from .._lib._dtypes import plan_dtypes
from .._lib._namespace import array_namespace, as_array, device_of
from .._lib._random import Randomness, library_of, stop_gradient
from .._lib._typing import Array, ArrayLike, Int, Real, Seed
from .._lib._validation import check_flag, check_ndim, single_axis
from .._softmax import softmax


def gumbel_softmax(
    logits: ArrayLike,
    /,
    *,
    tau: Real = 1.0,
    hard: bool = False,
    axis: Int = -1,
    rng: Seed = None,
) -> Array:
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
    check_ndim("logits", source, 1, "the categories")
    axis = single_axis(axis, source.ndim)
    hard = check_flag("hard", hard)
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
