"""logsumexp."""

from __future__ import annotations

from typing import Literal, overload

from . import _dispatch
from ._lib._typing import Array, ArrayLike, Axis, DTypeLike, Temperature

__all__ = ["logsumexp"]


@overload
def logsumexp(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: Literal[False] = ...,
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: Array | None = None,
) -> Array: ...


@overload
def logsumexp(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: Literal[True],
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: Array | None = None,
) -> tuple[Array, Array]: ...


@overload
def logsumexp(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = ...,
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: Array | None = None,
) -> Array | tuple[Array, Array]: ...


def logsumexp(
    x: ArrayLike,
    /,
    axis: Axis = -1,
    *,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    r"""Logarithm of the sum of exponentials, ``log(sum(b * exp(x / T)))``, along ``axis``.

    Parameters
    ----------
    x : array_like
        Scores, of any supported array library (see :func:`softmax`).
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to reduce; ``None`` is all axes. SciPy's
        default is ``None``; here it is the last axis, as for :func:`softmax`.
    b : array_like, optional
        Weights broadcastable to ``x``; they may be negative. Entries with
        ``b == 0`` take no part (even where ``x`` is ``inf``), as in SciPy. An
        array ``b`` takes part in the result dtype: without ``dtype=``, the result
        has the library's promoted dtype of ``x``'s floating dtype and ``b``'s
        (float32 ``x`` with float64 ``b`` gives float64, as in SciPy); a Python
        number does not. Complex, object and string ``b`` are a ``TypeError``.
    keepdims : bool, default False
        Keep the reduced axes with length 1.
    return_sign : bool, default False
        Return ``(log|sum|, sign(sum))``. Without it, a negative sum gives NaN,
        as in SciPy.
    temperature : float or array, default 1.0
        As in :func:`softmax`. ``temperature=0`` gives the limit of
        ``logsumexp(x / T)``: ``+inf`` if ``max(x) > 0``, ``-inf`` if it is
        ``< 0``, and ``log(k)`` for ``k`` maxima equal to 0.
    where : array of bool, optional
        Keep-mask; False entries take no part.
    dtype : dtype, optional
        Dtype of the computation and the result.
    out : ndarray, optional
        NumPy only: an array of the result's shape and dtype to write the result
        (the log-magnitude with ``return_sign``) into; it is returned in place of
        the result. Any other input with ``out=`` is a ``TypeError``.

    Returns
    -------
    array or tuple of arrays
        The reduced log-sum-exp, and its sign when ``return_sign`` is True.

    Notes
    -----
    At the edges: an empty axis, an all ``-inf`` or all masked row gives
    ``-inf``; ``+inf`` gives ``+inf``; NaN gives NaN; a zero sum (weights that
    cancel) gives ``-inf`` with sign 0.

    The result is ``max + log1p(sum - 1)``, with the ``1`` of the maxima removed
    exactly and each shifted exponential corrected for the rounding of
    ``x - max``; the error is within ``2 ulp(result) + 2 u |max|``, the second term
    being the cancellation inherent to the problem.

    With weights, the sum is taken in the ``log1p`` form only where it is within
    a factor 2 of 1, and as ``log|sum|`` elsewhere; rows whose weighted terms are
    near the ends of the range are summed scaled by a power of 2. The error then
    has a further absolute part of about ``n u`` times the condition number
    ``sum(|b| exp(x)) / |sum(b exp(x))|`` of the ``n`` weighted terms: the
    rounding of the terms themselves, which no summation in working precision
    avoids where weights of both signs cancel or the sum is close to 1 (a
    result close to 0). A term whose exponential is below the subnormal range
    counts as 0, whatever its weight, as in SciPy.

    See Also
    --------
    softmax, log_softmax, scipy.special.logsumexp

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.logsumexp([1.0, 3.0, 2.0]))
    3.40760596444438
    >>> float(smk.logsumexp([0.0, -40.0]))
    4.248354255291589e-18
    >>> smk.logsumexp([0.0, 0.0], b=[1.0, -2.0], return_sign=True)
    (array(0.), array(-1.))
    """
    return _dispatch.reduce(x, axis, b, keepdims, return_sign, temperature, where, dtype, out)
