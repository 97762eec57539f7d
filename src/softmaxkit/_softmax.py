"""softmax and log_softmax."""

from __future__ import annotations

from . import _dispatch
from ._kernels import LOG_SOFTMAX, SOFTMAX
from ._lib._typing import Array, ArrayLike, Axis, DTypeLike, Temperature

__all__ = ["softmax", "log_softmax"]


def softmax(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: Array | None = None,
) -> Array:
    r"""Softmax of ``x`` along ``axis``: ``exp(x / T) / sum(exp(x / T))``.

    Parameters
    ----------
    x : array_like
        Scores (logits). NumPy, PyTorch, JAX, CuPy, Dask, ``array_api_strict`` and
        TensorFlow arrays, Python numbers and lists. Integer and bool input is
        converted to the library's default floating dtype first. An ndarray
        subclass (``np.matrix``) gives a plain ndarray; a masked array
        (``numpy.ma``) is a ``TypeError``: pass its data and ``where=~mask``.
        NumPy operands (``where``, ``temperature``) next to a PyTorch, JAX or Dask
        ``x`` (or the other way round) are converted to that library, on its device.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalize over; ``None`` is all axes. The
        default is the last axis, as in the deep-learning frameworks (SciPy's
        default is ``None``).
    temperature : float or array, default 1.0
        ``x`` is divided by it. A scalar >= 0, or an array broadcastable to ``x``
        with length 1 along the normalized axes (one temperature per row).
        ``0`` is the limit: all the mass on the maximum, split equally among ties;
        ``inf`` is uniform over the entries that take part.
    where : array of bool, optional
        Keep-mask broadcastable to ``x``. False entries take no part: they get
        probability 0, exactly as if they were deleted.
    dtype : dtype, optional
        Dtype of the computation and the result. By default the input's floating
        dtype; float16 and bfloat16 are computed in float32 and returned in their
        own dtype.
    out : ndarray, optional
        NumPy only: an array of the result's shape and dtype to write the result
        into (it may be ``x`` itself); it is returned. Any other input with
        ``out=`` is a ``TypeError``.

    Returns
    -------
    array
        Probabilities of the same shape, library and device as ``x``; each row
        sums to 1, or is all zeros when no entry takes part.

    Raises
    ------
    ValueError
        For a negative or NaN temperature, an axis out of range or repeated, or
        ``where``/``temperature`` that do not broadcast to ``x``.
    TypeError
        For complex, object or string input, a non-boolean ``where``, a masked
        array, or arrays of two libraries that do not mix (PyTorch and JAX).

    Notes
    -----
    At the edges: a row with no finite maximum because every entry is ``-inf``
    or masked gives zeros; ``-inf`` entries get 0; ``+inf`` entries share the
    mass equally (the limit) and the others get 0; a NaN makes its row NaN; an
    axis of length 0 gives an empty result. No floating-point warning is raised.

    ``x - max(x)`` is computed with its rounding error (TwoSum), and the
    division by the temperature with its remainder (Dekker), so each result is
    within a few ulp of the exact value for every input; float32 input is
    computed in float64 where the library has it.

    See Also
    --------
    log_softmax, logsumexp

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.softmax([1.0, 3.0, 2.0])
    array([0.09003057, 0.66524096, 0.24472847])
    >>> smk.softmax([1000.0, 1001.0, 1002.0])
    array([0.09003057, 0.24472847, 0.66524096])
    >>> smk.softmax([[0.0, float("-inf")], [float("-inf"), float("-inf")]])
    array([[1., 0.],
           [0., 0.]])
    """
    return _dispatch.normalize(SOFTMAX, x, axis, temperature, where, dtype, out)


def log_softmax(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: Array | None = None,
) -> Array:
    r"""Logarithm of the softmax of ``x`` along ``axis``: ``x/T - logsumexp(x/T)``.

    Parameters
    ----------
    x : array_like
        Scores (logits), of any supported array library (see :func:`softmax`).
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalize over; ``None`` is all axes.
    temperature : float or array, default 1.0
        As in :func:`softmax`.
    where : array of bool, optional
        Keep-mask; False entries take no part and get ``-inf``.
    dtype : dtype, optional
        Dtype of the computation and the result.
    out : ndarray, optional
        NumPy only: an array of the result's shape and dtype to write the result
        into (it may be ``x`` itself); it is returned. Any other input with
        ``out=`` is a ``TypeError``.

    Returns
    -------
    array
        Log-probabilities of the same shape, library and device as ``x``.

    Raises
    ------
    ValueError, TypeError
        As in :func:`softmax`.

    Notes
    -----
    At the edges: an all ``-inf`` or all masked row gives ``-inf``; ``-inf``
    entries give ``-inf``; with ``k`` entries at ``+inf``, those give ``-log(k)``
    and the others ``-inf``; NaN makes its row NaN.

    The log of the sum is taken as ``log1p(sum - 1)`` with the ``1`` of the
    largest term removed exactly (Blanchard, Higham & Higham 2021), so that
    ``log_softmax([0, -40])[0]`` is ``-4.248e-18`` and not 0.

    See Also
    --------
    softmax, logsumexp

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.log_softmax([1.0, 3.0, 2.0])
    array([-2.40760596, -0.40760596, -1.40760596])
    >>> float(smk.log_softmax([0.0, -40.0])[0])
    -4.248354255291589e-18
    """
    return _dispatch.normalize(LOG_SOFTMAX, x, axis, temperature, where, dtype, out)
