"""Sparse alternatives to softmax: sparsemax, 1.5-entmax and alpha-entmax.

Softmax never gives an exact zero. Sparsemax (Martins & Astudillo, "From Softmax
to Sparsemax", ICML 2016) is the Euclidean projection of the scores onto the
probability simplex, and alpha-entmax (Peters, Niculae & Martins, "Sparse
Sequence-to-Sequence Models", ACL 2019) the Tsallis-regularised mapping between the
two: ``entmax(x, alpha)_i = [(alpha - 1) x_i - tau]_+ ** (1 / (alpha - 1))`` with the
threshold ``tau`` chosen so that the row sums to 1. ``alpha -> 1`` approaches
softmax, ``alpha = 2`` is sparsemax. Entries below the threshold get exactly 0.

Written once against the array namespace ``xp``: every library runs this code.
The threshold is found on the largest entries of each row only. For sparsemax and
1.5-entmax it is exact (sort the candidates, closed form); for any other alpha it
is bisection on the candidates. For long rows only the top ``k`` entries are
selected (``np.partition``, ``torch.topk``, ``jax.lax.top_k`` outside ``jit``), and
``k`` is grown when the threshold found shows that the support may be larger, so a
row of 128,256 entries with a small support is never fully sorted. Other libraries,
and JAX under ``jit``, sort the whole row.

float32 input is computed in float64 where the library has it, without converting
the whole array first: the maximum and the candidates are selected in float32
(selection is exact in any dtype) and the threshold is found in float64. The
final map ``max(x - shift, 0) ** (1 / (alpha - 1))`` runs in float64 on one copy
(NumPy), or, for sparsemax and 1.5-entmax on PyTorch, whose mixed-dtype
arithmetic is slow, in float32 with the float64 shift split into two float32
parts (within a few ulp of the float64 result).

Gradients: PyTorch (``torch.autograd.Function``) and JAX (``jax.custom_vjp``) use
the closed-form backward ``dx = gppr * (g - sum(gppr * g) / sum(gppr))`` with
``gppr = p ** (2 - alpha)`` on the support (Peters et al. 2019, Prop. 1); nothing is
differentiated through the sort or the bisection loop. The same formula is
:func:`sparsemax_vjp` and :func:`entmax_vjp` for any library.
"""

from __future__ import annotations

import math
import numbers
import operator

import array_api_compat
import numpy as np

from ._lib._autograd import differentiable
from ._lib._call import Call, describe
from ._lib._dtypes import _name, plan_dtypes
from ._lib._namespace import array_namespace, as_array, device_of, is_lazy, is_numpy_namespace
from ._lib._validation import broadcast_mask, check_temperature, normalize_axis

__all__ = [
    "sparsemax",
    "entmax15",
    "entmax",
    "sparsemax_vjp",
    "entmax_vjp",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_loss",
    "plot_sparse",
]

# Rows at least this long take the partial-sort path, starting from this many
# candidates and growing by GROWTH while the support may reach past them.
PARTIAL_MIN_LENGTH = 2048
INITIAL_CANDIDATES = 128
GROWTH = 4


class _Method:
    """Which mapping: 'sort' (exact, alpha 2 or 1.5) or 'bisect' (any alpha > 1)."""

    __slots__ = ("alpha", "exact", "n_iter", "tol")

    def __init__(self, alpha, exact, n_iter=50, tol=None):
        self.alpha = alpha
        self.exact = exact
        self.n_iter = n_iter
        self.tol = tol


# --------------------------------------------------------------------------- checks


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number > 1, got {alpha!r}")
    value = float(alpha)
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"alpha must be >= 1 (1 is softmax), got {value!r}")
    if math.isinf(value):
        raise ValueError(f"alpha must be finite, got {value!r}")
    return value


def _check_n_iter(n_iter) -> int:
    try:
        value = operator.index(n_iter)
    except TypeError:
        raise TypeError(f"n_iter must be an int >= 1, got {n_iter!r}") from None
    if value < 1:
        raise ValueError(f"n_iter must be >= 1, got {value!r}")
    return value


def _check_tol(tol):
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a positive number or None, got {tol!r}")
    value = float(tol)
    if not value > 0:
        raise ValueError(f"tol must be > 0, got {value!r}")
    return value


# --------------------------------------------------------------------------- layout


def _to_rows(xp, a, axes):
    """``a`` with the normalised axes moved last and flattened into one: (batch..., n)."""
    ndim = a.ndim
    rest = tuple(d for d in range(ndim) if d not in axes)
    perm = rest + tuple(axes)
    if perm != tuple(range(ndim)):
        a = xp.permute_dims(a, perm)
    permuted_shape = tuple(a.shape)
    batch = permuted_shape[: len(rest)]
    n = math.prod(permuted_shape[len(rest) :])
    return xp.reshape(a, batch + (n,)), perm, permuted_shape


def _from_rows(xp, a, perm, permuted_shape):
    a = xp.reshape(a, permuted_shape)
    if perm != tuple(range(len(perm))):
        inverse = tuple(int(i) for i in np.argsort(perm))
        a = xp.permute_dims(a, inverse)
    return a


def _temperature_rows(xp, temperature, perm, ndim_rest):
    """A per-row temperature array (length 1 on the normalised axes) in row layout."""
    if isinstance(temperature, float):
        return temperature
    t = temperature
    if perm != tuple(range(len(perm))):
        t = xp.permute_dims(t, perm)
    return xp.reshape(t, tuple(t.shape[:ndim_rest]) + (1,))


def _scalar(xp, value, like):
    return xp.asarray(value, dtype=like.dtype, device=device_of(xp, like))


# --------------------------------------------------------------------------- forward


def _shifted_scores(xp, z, keep, temperature):
    """``s = (z - max) / T`` per row (last axis), with the limits at the edges.

    ``s <= 0`` with maximum 0 on every row that has a finite maximum; masked and
    ``-inf`` entries are ``-inf``; a row holding ``+inf`` keeps 0 on its ``+inf``
    entries and ``-inf`` elsewhere (the limit shares the mass among them); an all
    ``-inf`` / all-masked row is all ``-inf``; a row holding NaN is all NaN.
    """
    zero = _scalar(xp, 0.0, z)
    neg_inf = _scalar(xp, -math.inf, z)
    pos_inf = _scalar(xp, math.inf, z)
    if keep is not None:
        z = xp.where(keep, z, neg_inf)
    row_max = xp.max(z, axis=-1, keepdims=True)
    if is_lazy(z) or not bool(xp.all(xp.isfinite(row_max))):
        pos_inf_row = row_max == pos_inf
        z = xp.where(pos_inf_row, xp.where(z == pos_inf, zero, neg_inf), z)
        row_max = xp.where(pos_inf_row | (row_max == neg_inf), zero, row_max)
    # The projection is invariant to a shift per row; shifting by the maximum puts
    # the threshold in [-1, 0) so that nothing overflows (an entry too far below
    # the maximum becomes -inf, where its probability is 0 anyway).
    s = z - row_max
    if isinstance(temperature, float):
        if temperature == 0.0:
            s = xp.where(s == zero, zero, xp.where(xp.isnan(s), s, neg_inf))
        elif temperature == math.inf:
            s = xp.where(xp.isfinite(s), zero, s)
        elif temperature != 1.0:
            s = s / temperature
        return s
    t_zero = temperature == zero
    t_inf = temperature == pos_inf
    t_safe = xp.where(t_zero | t_inf, _scalar(xp, 1.0, z), temperature)
    greedy = xp.where(s == zero, zero, xp.where(xp.isnan(s), s, neg_inf))
    uniform = xp.where(xp.isfinite(s), zero, s)
    return xp.where(t_zero, greedy, xp.where(t_inf, uniform, s / t_safe))


def _namespace_kind(xp) -> str:
    if is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    return "other"


def _top_candidates(xp, a, k):
    """The ``k`` largest entries of each row of ``a`` (last axis), in descending order."""
    n = a.shape[-1]
    if k >= n:
        return xp.sort(a, axis=-1, descending=True)
    kind = _namespace_kind(xp)
    if kind == "numpy":
        # introselect: O(n) per row, then only the k candidates are sorted.
        part = np.partition(a, n - k, axis=-1)[..., n - k :]
        return np.flip(np.sort(part, axis=-1), axis=-1)
    if kind == "torch":
        import torch

        return torch.topk(a, k, dim=-1, largest=True, sorted=True).values
    if kind == "jax":
        import jax

        return jax.lax.top_k(a, k)[0]
    return xp.sort(a, axis=-1, descending=True)


def _partial_sort_allowed(xp, a) -> bool:
    return a.shape[-1] >= PARTIAL_MIN_LENGTH and _namespace_kind(xp) != "other" and not is_lazy(a)


def _ranks(xp, c):
    k = c.shape[-1]
    return xp.arange(1, k + 1, dtype=c.dtype, device=device_of(xp, c))


def _sparsemax_threshold(xp, c):
    """Threshold and support size from descending candidates ``c`` (Held et al. 1974).

    ``tau = max_j (sum_{i <= j} c_i - 1) / j`` (Duchi et al. 2008); the support
    is the prefix where ``1 + j c_j > sum_{i <= j} c_i``.
    """
    one = _scalar(xp, 1.0, c)
    ranks = _ranks(xp, c)
    csum = xp.cumulative_sum(c, axis=-1)
    tau = xp.max((csum - one) / ranks, axis=-1, keepdims=True)
    support = one + ranks * c > csum
    size = xp.sum(xp.astype(support, c.dtype), axis=-1, keepdims=True)
    return tau, size


def _entmax15_threshold(xp, c):
    """Exact 1.5-entmax threshold from descending candidates ``c`` (Peters et al. 2019, Alg. 2).

    For a support of size ``j``, ``tau_j = mean_j - sqrt((1 - ss_j) / j)`` with
    ``ss_j`` the sum of squared deviations from the mean; the support is the prefix
    where ``tau_j <= c_j``.
    """
    zero = _scalar(xp, 0.0, c)
    one = _scalar(xp, 1.0, c)
    ranks = _ranks(xp, c)
    csum = xp.cumulative_sum(c, axis=-1)
    csum_sq = xp.cumulative_sum(c * c, axis=-1)
    mean = csum / ranks
    ss = csum_sq - csum * mean
    delta = (one - ss) / ranks
    tau_all = mean - xp.sqrt(xp.maximum(delta, zero))
    support = tau_all <= c
    size = xp.sum(xp.astype(support, c.dtype), axis=-1, keepdims=True)
    size = xp.maximum(size, one)
    tau = xp.sum(xp.where(ranks == size, tau_all, zero), axis=-1, keepdims=True)
    return tau, size


def _power_map(xp, y, alpha):
    """``max(y, 0) ** (1 / (alpha - 1))``."""
    y = xp.maximum(y, _scalar(xp, 0.0, y))
    if alpha == 2.0:
        return y
    if alpha == 1.5:
        return y * y
    return xp.pow(y, _scalar(xp, 1.0 / (alpha - 1.0), y))


def _bisection_threshold(xp, c, alpha, n, n_iter, tol):
    """The threshold by bisection on candidates ``c`` of rows of length ``n``.

    With the row maximum at 0, ``tau`` lies in ``[-1, -(1/n) ** (alpha - 1)]``
    (the largest entry has probability at most 1 and at least 1/n); the bracket
    has the same width on every row, so the number of steps needs no data.
    """
    one = _scalar(xp, 1.0, c)
    tau_lo = xp.zeros_like(c[..., :1]) - one
    width = 1.0 - (1.0 / n) ** (alpha - 1.0)
    for _ in range(n_iter):
        width /= 2.0
        tau_mid = tau_lo + width
        f_mid = xp.sum(_power_map(xp, c - tau_mid, alpha), axis=-1, keepdims=True) - one
        tau_lo = xp.where(f_mid >= 0, tau_mid, tau_lo)
        if tol is not None and width < tol:
            break
    return tau_lo


def _threshold(xp, n, candidates, method, partial):
    """The threshold ``tau`` of each row, from its largest shifted, scaled scores.

    ``candidates(k)`` gives the ``k`` largest entries of each row in the units of
    the threshold (row maximum 0), in descending order, in the working dtype.
    Also returns the sum of the unnormalised probabilities (None for sparsemax,
    whose closed form sums to 1 as it is).
    """
    k = min(n, INITIAL_CANDIDATES) if partial else n
    while True:
        c = candidates(k)
        # Entries below -1 never reach the support (tau >= -1); clipping them to -2
        # keeps every candidate finite (-inf would make inf - inf in the sums).
        c = xp.maximum(c, _scalar(xp, -2.0, c))
        if method.exact and method.alpha == 2.0:
            tau, size = _sparsemax_threshold(xp, c)
        elif method.exact:
            tau, size = _entmax15_threshold(xp, c)
        else:
            tau = _bisection_threshold(xp, c, method.alpha, n, method.n_iter, method.tol)
        total = None
        if not (method.exact and method.alpha == 2.0):
            # The probabilities' sum, from the candidates: it renormalises the
            # rounding of sqrt (1.5-entmax) and the bisection's bracket.
            total = xp.sum(_power_map(xp, c - tau, method.alpha), axis=-1, keepdims=True)
            total = xp.where(total == 0, _scalar(xp, 1.0, total), total)
        if k >= n:
            return tau, total
        if method.exact:
            # Only rows with a finite maximum (c_1 == 0) can need more candidates.
            unsolved = (size == k) & (c[..., :1] == 0)
        else:
            unsolved = c[..., -1:] > tau
        if not bool(xp.any(unsolved)):
            return tau, total
        k = min(n, k * GROWTH)


def _project_rows(xp, z, keep, temperature, method, work, scores=False):
    """Probabilities of rows ``z`` (last axis), and the shifted scores if ``scores``.

    ``z`` may still be in the input's dtype (float32 or float64) when ``work`` is
    wider: the common rows (finite maximum, scalar temperature) select their
    candidates in that dtype and convert only the candidates and the final map.
    """
    if keep is not None:
        z = xp.where(keep, z, _scalar(xp, -math.inf, z))
    if not scores and _fast_path_allowed(xp, z, temperature):
        row_max = xp.max(z, axis=-1, keepdims=True)
        if bool(xp.all(xp.isfinite(row_max))):
            return _project_finite_rows(xp, z, row_max, temperature, method, work), None
    s = _shifted_scores(xp, xp.astype(z, work), None, temperature)
    alpha = method.alpha
    a = s if alpha == 2.0 else s * _scalar(xp, alpha - 1.0, s)
    tau, total = _threshold(
        xp,
        a.shape[-1],
        lambda k: _top_candidates(xp, a, k),
        method,
        _partial_sort_allowed(xp, a),
    )
    p = _power_map(xp, a - tau, alpha)
    if total is not None:
        p = p / total
    return p, s


def _fast_path_allowed(xp, z, temperature) -> bool:
    return (
        isinstance(temperature, float)
        and 0.0 < temperature < math.inf
        and not is_lazy(z)
        and _namespace_kind(xp) in ("numpy", "torch")
    )


def _project_finite_rows(xp, z, row_max, temperature, method, work):
    """The mapping of rows with a finite maximum, at a scalar temperature.

    ``p = max((z - m) * scale - tau, 0) ** (1 / (alpha - 1)) / total`` with
    ``scale = (alpha - 1) / T``, computed in place on one working-dtype copy.
    """
    alpha = method.alpha
    scale = (alpha - 1.0) / temperature
    m = xp.astype(row_max, work)

    def candidates(k):
        c = xp.astype(_top_candidates(xp, z, k), work) - m
        return c * scale if scale != 1.0 else c

    tau, total = _threshold(xp, z.shape[-1], candidates, method, _partial_sort_allowed(xp, z))
    exponent = 1.0 / (alpha - 1.0)
    # With float64 work for a narrower result, folding tau into the shift costs
    # ulp64(m), far below the result's resolution while |m| < 2**20.
    fold = (
        _name(work) == "float64"
        and _name(z.dtype) != "float64"
        and bool(xp.all(xp.abs(m) < 2.0**20))
    )
    kind = _namespace_kind(xp)
    if fold and kind == "numpy" and alpha == 2.0 and scale == 1.0:
        # Sparsemax at T = 1: z - shift is computed in float64 and rounded once
        # into the input's dtype; the clamp at 0 is exact. No float64 array.
        y = np.empty_like(z)
        np.subtract(z, m + tau, out=y, casting="same_kind")
        return np.maximum(y, 0.0, out=y)
    if fold and kind == "torch" and alpha in (2.0, 1.5):
        # PyTorch's mixed float32/float64 arithmetic is slow; the shift is split
        # into float32 hi + lo instead. z - hi is exact when it is small (Sterbenz)
        # and rounds once otherwise, so y is within 1 ulp of z - shift.
        shift = m + tau / scale
        hi = xp.astype(shift, z.dtype)
        lo = xp.astype(shift - xp.astype(hi, shift.dtype), z.dtype)
        y = (z - hi).sub_(lo).clamp_(min=0.0)
        if alpha == 1.5:
            y.square_()
        factor = scale**exponent
        factor = factor if total is None else factor / total
        if not (isinstance(factor, float) and factor == 1.0):
            y.mul_(xp.astype(factor, z.dtype) if not isinstance(factor, float) else factor)
        return y
    if fold:
        y = z - (m + tau / scale)
        factor = scale**exponent
        factor = factor if total is None else factor / total
        tail = None
    else:
        y = z - m
        factor = None if total is None else 1.0 / total
        tail = tau
    if kind == "numpy":
        if not fold and scale != 1.0:
            np.multiply(y, scale, out=y)
        if tail is not None:
            np.subtract(y, tail, out=y)
        np.maximum(y, 0.0, out=y)
        if alpha == 1.5:
            np.square(y, out=y)
        elif alpha != 2.0:
            np.power(y, exponent, out=y)
        if factor is not None and not (isinstance(factor, float) and factor == 1.0):
            np.multiply(y, factor, out=y)
        return y
    if not fold and scale != 1.0:
        y.mul_(scale)
    if tail is not None:
        y.sub_(tail)
    y.clamp_(min=0.0)
    if alpha == 1.5:
        y.square_()
    elif alpha != 2.0:
        y.pow_(exponent)
    if factor is not None and not (isinstance(factor, float) and factor == 1.0):
        y.mul_(factor)
    return y


# --------------------------------------------------------------------------- gradients


def _vjp_core(xp, p, g, axes, alpha, temperature):
    """``J^T g`` of the mapping at output ``p`` (Peters et al. 2019, Prop. 1).

    ``dx = gppr * g - gppr * sum(gppr * g) / sum(gppr)`` with ``gppr = p ** (2 - alpha)``
    on the support and 0 off it. Only float arithmetic (no boolean masks), in
    the dtype of ``p``: the row sums use the library's pairwise (NumPy) or
    cascade (PyTorch) summation.
    """
    zero = _scalar(xp, 0.0, p)
    if alpha == 2.0:
        # p >= 0: sign(p) is the support's indicator (NaN on a NaN row).
        gppr = xp.sign(p)
    elif alpha == 1.5:
        gppr = xp.sqrt(p)
    elif alpha == 1.0:
        gppr = p
    elif alpha < 2.0:
        # 0 ** (2 - alpha) is 0 off the support.
        gppr = xp.pow(p, _scalar(xp, 2.0 - alpha, p))
    else:
        support = p > zero
        powered = xp.pow(xp.where(support, p, _scalar(xp, 1.0, p)), _scalar(xp, 2.0 - alpha, p))
        gppr = xp.where(support, powered, zero)
    weighted = g * gppr
    if axes:
        numerator = xp.sum(weighted, axis=axes, keepdims=True)
        denominator = xp.sum(gppr, axis=axes, keepdims=True)
    else:
        numerator, denominator = weighted, gppr
    safe = xp.where(denominator == zero, _scalar(xp, 1.0, denominator), denominator)
    grad = weighted - (numerator / safe) * gppr
    if isinstance(temperature, float):
        if temperature == 0.0 or temperature == math.inf:
            return xp.zeros_like(grad)
        if temperature != 1.0:
            grad = grad / temperature
        return grad
    # Greedy and uniform limits are piecewise constant: zero gradient.
    t = xp.astype(temperature, p.dtype)
    edge = (t == zero) | (t == _scalar(xp, math.inf, p))
    return xp.where(edge, zero, grad / xp.where(edge, _scalar(xp, 1.0, p), t))


def _elementwise_dtype(xp, result_dtype, work_dtype):
    return result_dtype if _name(result_dtype) in ("float32", "float64") else work_dtype


def _with_gradient(source, forward, backward):
    """``forward(source)[0]``, differentiable in PyTorch and JAX through ``backward``
    (``forward(x) -> (out, saved)``, ``backward(saved, g) -> dx``)."""
    return differentiable(forward, lambda saved, g: (backward(saved, g),), source)


# --------------------------------------------------------------------------- public mappings


def _temperature_array(temperature):
    return None if isinstance(temperature, (int, float)) else temperature


def _is_dask(xp) -> bool:
    return getattr(xp, "__name__", "").startswith(("dask", "array_api_compat.dask"))


def _dask_map(function, x, axes, where, temperature, result_dtype, **options):
    """``function`` on NumPy blocks of Dask ``x``, the normalised axes in one chunk each."""
    import dask.array as da

    x = da.asarray(x)
    x = x.rechunk({a: -1 for a in axes})
    operands = [x]
    if where is not None:
        operands.append(da.broadcast_to(da.asarray(where), x.shape).rechunk(x.chunks))
    t_is_array = not isinstance(temperature, float)
    if t_is_array:
        operands.append(da.broadcast_to(da.asarray(temperature), x.shape).rechunk(x.chunks))
    row_index = tuple(slice(0, 1) if d in axes else slice(None) for d in range(x.ndim))

    def block(xb, *rest):
        rest = list(rest)
        wb = rest.pop(0) if where is not None else None
        tb = rest.pop(0)[row_index] if t_is_array else temperature
        return function(np.asarray(xb), axis=axes, where=wb, temperature=tb, **options)

    return da.map_blocks(block, *operands, dtype=result_dtype)


def _without_gradient(temperature):
    """A PyTorch temperature detached: gradients flow to ``x`` only."""
    detach = getattr(temperature, "detach", None)
    return detach() if callable(detach) and not isinstance(temperature, np.ndarray) else temperature


def _prepare_light(source, axis, temperature, where):
    """As ``prepare``, but float32/float64 input stays in its dtype (see _project_rows)."""
    temperature = _without_gradient(temperature)
    xp = array_namespace(source, where, _temperature_array(temperature))
    source = as_array(xp, source)
    plan = plan_dtypes(xp, source, None)
    name = _name(source.dtype)
    if name in ("float32", "float64") and _name(plan.result) == name:
        x = source
    else:
        x = xp.astype(source, plan.work)
    axes = normalize_axis(axis, source.ndim)
    t = check_temperature(xp, temperature, x, axes, plan.work)
    keep = None if where is None else broadcast_mask(xp, where, x)
    return Call(xp, source, axes, t, keep, plan, given=temperature, work=x)


def _mapping(x, axis, where, temperature, method):
    xp = array_namespace(x, where, _temperature_array(temperature))
    if _is_dask(xp):
        source = as_array(xp, x)
        plan = plan_dtypes(xp, source, None)
        axes = normalize_axis(axis, source.ndim)
        check_temperature(xp, temperature, source, axes, plan.work)
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


def sparsemax(x, /, axis=-1, *, where=None, temperature=1.0):
    r"""Sparsemax of ``x`` along ``axis``: the Euclidean projection onto the simplex.

    ``sparsemax(x)_i = max(x_i / T - tau, 0)`` with ``tau`` such that each row sums
    to 1 (Martins & Astudillo 2016). Entries below the threshold are exactly 0.

    Parameters
    ----------
    x : array_like
        Scores (logits): NumPy, PyTorch, JAX, ``array_api_strict`` or Dask arrays
        (Dask along axes it may rechunk into one chunk), Python numbers and lists.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalise over; ``None`` is all axes.
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


def entmax15(x, /, axis=-1, *, where=None, temperature=1.0):
    r"""1.5-entmax of ``x`` along ``axis``, exact (sort-based).

    ``entmax15(x)_i = max(x_i / (2T) - tau, 0) ** 2`` with ``tau`` such that each
    row sums to 1 (Peters, Niculae & Martins 2019). Between softmax and
    sparsemax: sparse, but smoother than sparsemax.

    Parameters
    ----------
    x : array_like
        Scores (logits), as in :func:`sparsemax`.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalise over; ``None`` is all axes.
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


def entmax(x, /, axis=-1, *, alpha=1.5, where=None, temperature=1.0, n_iter=50, tol=None):
    r"""alpha-entmax of ``x`` along ``axis``, by bisection on the threshold.

    ``entmax(x)_i = max((alpha - 1) x_i / T - tau, 0) ** (1 / (alpha - 1))``,
    normalised to sum to 1. ``alpha = 2`` is :func:`sparsemax`, ``alpha = 1.5``
    :func:`entmax15` (those two are exact there), and ``alpha -> 1`` approaches
    softmax; ``alpha = 1`` exactly is :func:`softmaxkit.softmax`.

    Parameters
    ----------
    x : array_like
        Scores (logits), as in :func:`sparsemax`.
    axis : int, tuple of int or None, default -1
        The axis (or axes, jointly) to normalise over; ``None`` is all axes.
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
    n_iter = _check_n_iter(n_iter)
    tol = _check_tol(tol)
    if alpha == 1.0:
        from ._softmax import softmax

        return softmax(x, axis, temperature=temperature, where=where)
    return _mapping(
        x, axis, where, temperature, _Method(alpha, exact=False, n_iter=n_iter, tol=tol)
    )


def _vjp(y, cotangent, axis, alpha, temperature):
    xp = array_namespace(y, cotangent, _temperature_array(temperature))
    y = as_array(xp, y)
    cotangent = as_array(xp, cotangent)
    plan = plan_dtypes(xp, y, None)
    axes = normalize_axis(axis, y.ndim)
    if tuple(cotangent.shape) != tuple(y.shape):
        raise ValueError(
            f"cotangent of shape {tuple(cotangent.shape)} must have the shape of y, "
            f"{tuple(y.shape)}"
        )
    t = check_temperature(xp, temperature, y, axes, plan.work)
    dtype = _elementwise_dtype(xp, plan.result, plan.work)
    grad = _vjp_core(xp, xp.astype(y, dtype), xp.astype(cotangent, dtype), axes, alpha, t)
    grad = xp.astype(grad, plan.result)
    return np.asarray(grad) if is_numpy_namespace(xp) else grad


def sparsemax_vjp(y, cotangent, /, axis=-1, *, temperature=1.0):
    r"""The gradient of ``sum(cotangent * sparsemax(x))`` with respect to ``x``.

    Parameters
    ----------
    y : array_like
        The output ``sparsemax(x, axis, temperature=temperature)``.
    cotangent : array_like
        The upstream gradient, of the shape of ``y``.
    axis : int, tuple of int or None, default -1
        The axis that sparsemax normalised over.
    temperature : float or array, default 1.0
        The temperature that sparsemax used.

    Returns
    -------
    array
        ``(cotangent - mean over the support) / T`` on the support, 0 elsewhere.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> y = smk.sparsemax([1.0, 3.0, 2.5])
    >>> smk.sparsemax_vjp(y, [1.0, 0.0, 0.0])
    array([0., 0., 0.])
    >>> smk.sparsemax_vjp(y, [0.0, 1.0, 0.0])
    array([ 0. ,  0.5, -0.5])
    """
    return _vjp(y, cotangent, axis, 2.0, temperature)


def entmax_vjp(y, cotangent, /, axis=-1, *, alpha=1.5, temperature=1.0):
    r"""The gradient of ``sum(cotangent * entmax(x, alpha=alpha))`` with respect to ``x``.

    ``dx = (gppr * g - gppr * sum(gppr * g) / sum(gppr)) / T`` with
    ``gppr = y ** (2 - alpha)`` on the support (Peters et al. 2019); ``alpha = 1``
    is the softmax gradient.

    Parameters
    ----------
    y : array_like
        The output of :func:`entmax` (or :func:`entmax15`, :func:`sparsemax`).
    cotangent : array_like
        The upstream gradient, of the shape of ``y``.
    axis : int, tuple of int or None, default -1
        The axis the mapping normalised over.
    alpha : float, default 1.5
        The ``alpha`` of the mapping (>= 1).
    temperature : float or array, default 1.0
        The temperature of the mapping.

    Returns
    -------
    array
        The gradient with respect to the scores, of the shape of ``y``.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> y = smk.entmax15([1.0, 3.0, 2.5])
    >>> smk.entmax_vjp(y, [0.0, 1.0, 0.0], alpha=1.5).round(6)
    array([ 0.     ,  0.33676, -0.33676])
    """
    return _vjp(y, cotangent, axis, _check_alpha(alpha), temperature)


# --------------------------------------------------------------------------- losses

_REDUCTIONS = ("mean", "sum", "none")


def _loss(x, target, axis, alpha, method, weight, ignore_index, reduction, where, temperature):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int for a loss, got {axis!r}") from None
    xp = array_namespace(x, target, weight, where, _temperature_array(temperature))
    source = as_array(xp, x)
    if source.ndim == 0:
        raise ValueError("x must have at least one dimension (the classes) for a loss")
    (class_axis,) = normalize_axis(axis, source.ndim)
    target = as_array(xp, target, like=source)
    expected = tuple(source.shape[:class_axis]) + tuple(source.shape[class_axis + 1 :])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target of shape {tuple(target.shape)} must have the shape of x without the "
            f"class axis {class_axis}, {expected}"
        )
    if not _is_integer_dtype(xp, target):
        raise TypeError(f"target must hold class indices (integers), got dtype {target.dtype}")
    n_classes = source.shape[class_axis]
    valid = target != ignore_index
    if not is_lazy(target):
        out_of_range = valid & ((target < 0) | (target >= n_classes))
        if bool(xp.any(out_of_range)):
            raise ValueError(f"target must be in [0, {n_classes}) or ignore_index ({ignore_index})")
    state = {}

    def forward(x_in):
        args = describe(x_in, class_axis, temperature=_without_gradient(temperature), where=where)
        xp = args.xp
        work = args.plan.work
        state["args"] = args
        z, perm, permuted_shape = _to_rows(xp, args.x, args.axes)
        keep = None if args.keep is None else _to_rows(xp, args.keep, args.axes)[0]
        t = _temperature_rows(xp, args.temperature, perm, z.ndim - 1)
        zero = _scalar(xp, 0.0, z)
        classes = xp.arange(n_classes, device=device_of(xp, z))
        onehot = (classes == xp.expand_dims(target, axis=-1)) & xp.expand_dims(valid, axis=-1)
        with np.errstate(over="ignore"):
            if alpha == 1.0:
                s = _shifted_scores(xp, z, keep, t)
                from ._softmax import softmax

                p = softmax(s, -1)
            else:
                if method.tol is None and not method.exact:
                    method.tol = float(xp.finfo(args.plan.work).eps) / 4
                p, s = _project_rows(xp, z, keep, t, method, work, scores=True)
            support = p > zero
            if alpha == 2.0:
                omega = (1.0 - xp.sum(p * p, axis=-1)) / 2.0
            elif alpha == 1.0:
                omega = -xp.sum(
                    xp.where(support, p * xp.log(xp.where(support, p, 1.0)), zero), axis=-1
                )
            else:
                powered = xp.where(support, xp.pow(p, _scalar(xp, alpha, p)), zero)
                omega = (1.0 - xp.sum(powered, axis=-1)) / (alpha * (alpha - 1.0))
            # <p - e_y, s>: s is finite on the support; the target's own score may be -inf
            # (a deleted target), which makes the loss +inf.
            inner = xp.sum(p * xp.where(support, s, zero), axis=-1)
            target_score = xp.sum(xp.where(onehot, s, zero), axis=-1)
            per_sample = xp.where(valid, omega + inner - target_score, zero)
            per_sample = xp.where(valid, xp.maximum(per_sample, zero), zero)
        factor = xp.where(xp.expand_dims(valid, axis=-1), p - xp.astype(onehot, work), zero)
        if isinstance(t, float):
            if t in (0.0, math.inf):
                factor = xp.zeros_like(factor)
            elif t != 1.0:
                factor = factor / t
        else:
            edge = (t == zero) | (t == math.inf)
            factor = xp.where(edge, zero, factor / xp.where(edge, 1.0, t))
        factor = _from_rows(xp, factor, perm, permuted_shape)
        return args.finish(per_sample), args.finish(factor)

    def backward(saved, g):
        xp = state["args"].xp
        return xp.expand_dims(g, axis=class_axis) * saved

    per_sample = _with_gradient(source, forward, backward)
    xp_out = array_namespace(per_sample)
    if weight is not None:
        weight = as_array(xp_out, weight, like=per_sample)
        if tuple(weight.shape) != (n_classes,):
            raise ValueError(
                f"weight must have shape ({n_classes},) (one per class), got {tuple(weight.shape)}"
            )
        safe_target = xp_out.where(valid, target, xp_out.zeros_like(target))
        flat = xp_out.reshape(safe_target, (-1,))
        sample_weight = xp_out.reshape(xp_out.take(weight, flat, axis=0), tuple(target.shape))
        sample_weight = xp_out.where(
            valid, xp_out.astype(sample_weight, per_sample.dtype), xp_out.zeros_like(per_sample)
        )
    else:
        sample_weight = xp_out.astype(valid, per_sample.dtype)
    weighted = per_sample * sample_weight
    if reduction == "none":
        return weighted
    total = xp_out.sum(weighted)
    if reduction == "sum":
        return total
    denominator = xp_out.sum(sample_weight)
    # Every target ignored: 0, not 0/0.
    return xp_out.where(
        denominator == 0,
        xp_out.zeros_like(total),
        total / xp_out.where(denominator == 0, xp_out.ones_like(denominator), denominator),
    )


def _is_integer_dtype(xp, a) -> bool:
    try:
        return bool(xp.isdtype(a.dtype, "integral"))
    except (AttributeError, TypeError, ValueError):
        return np.dtype(_name(a.dtype)).kind in "iu"


_LOSS_DOC = r"""

    The Fenchel-Young loss ``Omega(p) + <p - e_y, z>`` with ``z = x / T``,
    ``p`` the mapping of ``z`` and ``Omega`` the Tsallis entropy
    ``(1 - sum p ** alpha) / (alpha (alpha - 1))`` (Blondel, Martins & Niculae
    2020). It is >= 0, is 0 exactly when ``p`` is the one-hot target, and its
    gradient is ``(p - e_y) / T``.

    Parameters
    ----------
    x : array_like
        Scores (logits) with the classes along ``axis``.
    target : array_like of int
        Class indices, of the shape of ``x`` without ``axis``.
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        One weight per class, as in PyTorch's ``cross_entropy``.
    ignore_index : int, default -100
        Targets equal to it contribute nothing (loss and gradient 0).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'`` is the weighted mean over the targets not ignored (``sum(w_y l)
        / sum(w_y)``), 0 when all are ignored.
    where : array of bool, optional
        Keep-mask; False classes are deleted (a deleted target gives ``inf``).
    temperature : float or array, default 1.0
        ``x`` is divided by it.
"""


def sparsemax_loss(
    x,
    target,
    /,
    axis=-1,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    where=None,
    temperature=1.0,
):
    """Sparsemax loss (Martins & Astudillo 2016)."""
    return _loss(
        x,
        target,
        axis,
        2.0,
        _Method(2.0, exact=True),
        weight,
        ignore_index,
        reduction,
        where,
        temperature,
    )


def entmax15_loss(
    x,
    target,
    /,
    axis=-1,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    where=None,
    temperature=1.0,
):
    """1.5-entmax loss (Peters, Niculae & Martins 2019)."""
    return _loss(
        x,
        target,
        axis,
        1.5,
        _Method(1.5, exact=True),
        weight,
        ignore_index,
        reduction,
        where,
        temperature,
    )


def entmax_loss(
    x,
    target,
    /,
    axis=-1,
    *,
    alpha=1.5,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    where=None,
    temperature=1.0,
    n_iter=50,
    tol=None,
):
    """alpha-entmax loss, by bisection (``alpha = 1`` is the cross-entropy)."""
    alpha = _check_alpha(alpha)
    method = _Method(alpha, exact=False, n_iter=_check_n_iter(n_iter), tol=_check_tol(tol))
    return _loss(
        x, target, axis, alpha, method, weight, ignore_index, reduction, where, temperature
    )


sparsemax_loss.__doc__ += (
    _LOSS_DOC
    + """
    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.sparsemax_loss([[1.0, 3.0, 2.5]], [1]))
    0.0625
    >>> float(smk.sparsemax_loss([[1.0, 5.0, 2.5]], [1]))
    0.0
"""
)
entmax15_loss.__doc__ += (
    _LOSS_DOC
    + """
    Examples
    --------
    >>> import softmaxkit as smk
    >>> round(float(smk.entmax15_loss([[1.0, 3.0, 2.5]], [2])), 6)
    0.684371
"""
)
entmax_loss.__doc__ += (
    _LOSS_DOC
    + """    alpha : float, default 1.5
        A finite number >= 1.
    n_iter, tol
        As in :func:`entmax`.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> float(smk.entmax_loss([[1.0, 3.0, 2.5]], [1], alpha=2.0))
    0.0625
"""
)


# --------------------------------------------------------------------------- figure


def plot_sparse(logits=None, *, ax=None, temperature=1.0):
    """Bar chart of softmax, sparsemax and 1.5-entmax of the same logits (matplotlib).

    Parameters
    ----------
    logits : array_like, optional
        One row of scores; a fixed example by default.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    temperature : float, default 1.0
        Applied to all three mappings.

    Returns
    -------
    matplotlib.axes.Axes

    See Also
    --------
    softmaxkit.plot.sparse : the same figure as a ``Figure``, without ``pyplot``
        (``softmax plot sparse -o FILE`` from a terminal).
    """
    import matplotlib.pyplot as plt

    from .plot import DEFAULT_SPARSE_LOGITS, draw_sparse

    row = np.asarray(DEFAULT_SPARSE_LOGITS if logits is None else logits, dtype=np.float64)
    if row.ndim != 1:
        raise ValueError(f"logits must be one row, got shape {row.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6))
    return draw_sparse(ax, row, temperature=temperature)
