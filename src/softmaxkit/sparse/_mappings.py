"""The public mappings: :func:`sparsemax`, :func:`entmax15` and :func:`entmax`."""

from __future__ import annotations

import numpy as np

from .._lib._call import describe
from .._lib._dtypes import _name
from .._lib._library import Library, library_of_namespace
from .._lib._namespace import array_namespace, as_array
from .._lib._typing import Array, ArrayLike, Axis, Int, Real, Temperature
from .._softmax import softmax
from ._dask_map import _dask_map
from ._gradients import _vjp_core, _with_gradient
from ._projection import _project_rows
from ._rows import (
    _bisection,
    _check_alpha,
    _elementwise_dtype,
    _from_rows,
    _Method,
    _temperature_array,
    _temperature_rows,
    _to_rows,
    _without_gradient,
)


def _prepare_light(source, axis, temperature, where):
    """The described call (:func:`~.._lib._call.describe`), with float32/float64 input
    kept in its own dtype as the working array (see _project_rows)."""
    call = describe(source, axis, temperature=_without_gradient(temperature), where=where)
    name = _name(call.source.dtype)
    if name in ("float32", "float64") and _name(call.plan.result) == name:
        call.use_as_work(call.source)
    return call


def _mapping(x, axis, where, temperature, method):
    xp = array_namespace(x, where, _temperature_array(temperature))
    if library_of_namespace(xp) is Library.DASK:
        call = describe(x, axis, temperature=temperature, where=where)
        source, plan, axes = call.source, call.plan, call.axes
        function = sparsemax if method.exact and method.alpha == 2.0 else None
        if function is None:
            function = entmax15 if method.exact else entmax
        options = (
            {}
            if method.exact
            else {"alpha": method.alpha, "n_iter": method.n_iter, "tol": method.tol}
        )
        return _dask_map(function, source, axes, where, temperature, plan.result, **options)

    state = {}

    def forward(source):
        args = _prepare_light(source, axis, temperature, where)
        xp = args.xp
        state["args"] = args
        if args.is_empty:
            out = args.finish(args.x)
            return out, out
        if method.tol is None and not method.exact:
            method.tol = float(xp.finfo(args.plan.work).eps) / 4
        z, perm, permuted_shape = _to_rows(xp, args.x, args.axes)
        keep = None if args.keep is None else _to_rows(xp, args.keep, args.axes)[0]
        t = _temperature_rows(xp, args.temperature, perm, z.ndim - 1)
        with np.errstate(over="ignore"):
            p, _ = _project_rows(xp, z, keep, t, method, args.plan.work)
        out = args.finish(_from_rows(xp, p, perm, permuted_shape))
        return out, out

    def backward(saved, g):
        args = state["args"]
        xp = args.xp
        dtype = _elementwise_dtype(xp, args.plan.result, args.plan.work)
        p = xp.astype(saved, dtype)
        g = xp.astype(g, dtype)
        return _vjp_core(xp, p, g, args.axes, method.alpha, args.temperature)

    return _with_gradient(as_array(xp, x), forward, backward)


def sparsemax(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    temperature: Temperature = 1.0,
) -> Array:
    r"""Sparsemax of ``x`` along ``axis``: the Euclidean projection onto the simplex.

    ``sparsemax(x)_i = max(x_i / T - tau, 0)`` with ``tau`` such that each row sums
    to 1 (Martins & Astudillo 2016). Entries below the threshold are exactly 0.

    Parameters
    ----------
    x : array_like
        Scores (logits): NumPy, PyTorch, JAX, ``array_api_strict`` or Dask arrays
        (Dask along axes it may rechunk into one chunk), Python numbers and lists.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalize over; ``None`` is all axes.
    where : array of bool, optional
        Keep-mask broadcastable to ``x``; False entries are deleted (probability 0).
    temperature : float or array, default 1.0
        ``x`` is divided by it; as in :func:`softmaxkit.softmax` (``0`` puts the
        mass on the maximum, ties shared; ``inf`` is uniform).

    Returns
    -------
    array
        Probabilities of the same shape, library and dtype as ``x`` (float16 and
        bfloat16 are computed in float32, float32 in float64 where available).

    Notes
    -----
    Rows that are all ``-inf`` or all masked give zeros (zero gradient); ``-inf``
    entries are removed; ``+inf`` entries share the mass equally; a NaN makes its
    row NaN. PyTorch and JAX gradients use the closed form
    ``dx = s * (g - mean_s(g)) / T`` over the support ``s``; they flow to ``x``
    only (an array temperature gets none).

    See Also
    --------
    entmax15, entmax, sparsemax_vjp, sparsemax_loss

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.sparsemax([1.0, 3.0, 2.5])
    array([0.  , 0.75, 0.25])
    >>> smk.sparsemax([[0.0, float("-inf")], [float("-inf"), float("-inf")]])
    array([[1., 0.],
           [0., 0.]])
    """
    return _mapping(x, axis, where, temperature, _Method(2.0, exact=True))


def entmax15(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    temperature: Temperature = 1.0,
) -> Array:
    r"""1.5-entmax of ``x`` along ``axis``, exact (sort-based).

    ``entmax15(x)_i = max(x_i / (2T) - tau, 0) ** 2`` with ``tau`` such that each
    row sums to 1 (Peters, Niculae & Martins 2019). Between softmax and
    sparsemax: sparse, but smoother than sparsemax.

    Parameters
    ----------
    x : array_like
        Scores (logits), as in :func:`sparsemax`.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalize over; ``None`` is all axes.
    where : array of bool, optional
        Keep-mask; False entries are deleted (probability 0).
    temperature : float or array, default 1.0
        ``x`` is divided by it.

    Returns
    -------
    array
        Probabilities of the same shape, library and dtype as ``x``.

    See Also
    --------
    sparsemax, entmax, entmax_vjp, entmax15_loss

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.entmax15([1.0, 3.0, 2.5])
    array([0.        , 0.67399264, 0.32600736])
    """
    return _mapping(x, axis, where, temperature, _Method(1.5, exact=True))


def entmax(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    alpha: Real = 1.5,
    where: ArrayLike | None = None,
    temperature: Temperature = 1.0,
    n_iter: Int = 50,
    tol: Real | None = None,
) -> Array:
    r"""alpha-entmax of ``x`` along ``axis``, by bisection on the threshold.

    ``entmax(x)_i = max((alpha - 1) x_i / T - tau, 0) ** (1 / (alpha - 1))``,
    normalized to sum to 1. ``alpha = 2`` is :func:`sparsemax`, ``alpha = 1.5``
    :func:`entmax15` (those two are exact there), and ``alpha -> 1`` approaches
    softmax; ``alpha = 1`` exactly is :func:`softmaxkit.softmax`.

    Parameters
    ----------
    x : array_like
        Scores (logits), as in :func:`sparsemax`.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalize over; ``None`` is all axes.
    alpha : float, default 1.5
        A finite number >= 1.
    where : array of bool, optional
        Keep-mask; False entries are deleted (probability 0).
    temperature : float or array, default 1.0
        ``x`` is divided by it.
    n_iter : int, default 50
        The most bisection steps.
    tol : float, optional
        Stop once the bracket on the threshold is narrower than ``tol``. By
        default a quarter of the working dtype's machine epsilon (float64 for
        float32 input where available, float32 for float16/bfloat16).

    Returns
    -------
    array
        Probabilities of the same shape, library and dtype as ``x``.

    Raises
    ------
    ValueError
        For ``alpha < 1``, NaN or infinite, ``n_iter < 1``, ``tol <= 0``, and as
        in :func:`softmaxkit.softmax`.

    See Also
    --------
    sparsemax, entmax15, entmax_vjp, entmax_loss

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.entmax([1.0, 3.0, 2.5], alpha=2.0)
    array([0.  , 0.75, 0.25])
    >>> smk.entmax([1.0, 3.0, 2.5], alpha=1.25).round(6)
    array([0.023476, 0.631467, 0.345058])
    """
    alpha = _check_alpha(alpha)
    method = _bisection(alpha, n_iter, tol)
    if alpha == 1.0:
        return softmax(x, axis, temperature=temperature, where=where)
    return _mapping(x, axis, where, temperature, method)
