"""Temperature scaling: the one temperature that maximises the likelihood of the labels.

Guo, Pleiss, Sun & Weinberger (2017), "On Calibration of Modern Neural Networks".
With ``β = 1/T`` and each row shifted by its maximum (``d = z - max z``, which
leaves softmax unchanged and is exact for every ``β > 0``), the mean negative
log-likelihood is

    L(β) = Σ_i w_i [log Σ_k exp(β d_ik) - β t_i],      t_i = d_{i, y_i}  (or Σ_k q_ik d_ik),

a log-sum-exp of linear functions minus a linear one: convex in β, with

    L'(β)  = Σ_i w_i (E_p[d_i] - t_i),     L''(β) = Σ_i w_i Var_p[d_i],

under ``p = softmax(β d_i)``. The minimiser is the root of ``L'``, found by
Newton's method safeguarded by bisection (Numerical Recipes' ``rtsafe``) inside
the bracket the bounds give. Each step is one run of the compiled kernel
(:func:`softmaxkit._kernels.softmax_stats`: the softmax rows and each row's
log-normalizer) and two row-wise contractions for the moments.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from .. import _kernels
from .._lib._typing import ArrayLike, Int, Real
from .._lib._validation import check_int
from .._logsumexp import logsumexp
from .._softmax import softmax
from ._inputs import CalibrationWarning, check_bounds, labelled

__all__ = ["fit_temperature"]

# The relative tolerance on T; the Newton steps stop a little below it, where the
# next step would change T by less than the rounding of the derivative allows.
RELATIVE_TOLERANCE = 1e-10
_STEP_TOLERANCE = 1e-12
_MAX_ITERATIONS = 200


# Rows per block of the moments: about 2**20 entries, so that the probabilities and
# the centred logits of a block stay a few MB whatever the size of the problem.
_BLOCK_ENTRIES = 1 << 20


class TemperatureProblem:
    """The NLL of labelled logits as a function of ``β = 1/T`` (internal, for the fits).

    ``shifted`` holds ``d = z - max z`` per row (float64, ``-inf`` kept: it takes no
    part), ``target`` the ``t_i`` above and ``weight`` the normalized row weights of
    the rows that take part. Everything else is computed by blocks of rows, with
    ``-inf`` read as 0 in the moments (its probability is 0).
    """

    def __init__(self, data):
        keep = data.weight > 0
        self.weight = data.weight[keep]
        self.shifted = data.values[keep]  # a copy: boolean indexing
        with np.errstate(invalid="ignore"):  # a row of -inf only: refused below
            self.shifted -= self.shifted.max(axis=1, keepdims=True)
        self.all_finite = bool(np.isfinite(self.shifted).all())
        rows, classes = self.shifted.shape
        self._step = max(1, _BLOCK_ENTRIES // classes)
        self._probabilities = np.empty((min(rows, self._step), classes))
        if data.index is not None:
            index = data.index[keep]
            self.target = self.shifted[np.arange(index.size), index]
            if not np.isfinite(self.target).all():
                row = int(np.flatnonzero(keep)[np.flatnonzero(~np.isfinite(self.target))[0]])
                raise ValueError(
                    f"logits: the labelled class of row {row} has logit -inf, so its "
                    "likelihood is 0 at every temperature"
                )
        else:
            target = data.target[keep]
            self.target = np.empty(rows)
            for part, finite in self._blocks():
                lost = (target[part] > 0) & ~np.isfinite(self.shifted[part])
                if lost.any():
                    first = part.start + int(np.flatnonzero(lost.any(axis=1))[0])
                    row = int(np.flatnonzero(keep)[first])
                    raise ValueError(
                        f"logits: row {row} gives probability to a class whose logit is "
                        "-inf, so its likelihood is 0 at every temperature"
                    )
                self.target[part] = np.einsum("ij,ij->i", target[part], finite)

    def _blocks(self):
        """``(rows, d)`` by blocks of rows, ``-inf`` read as 0."""
        for start in range(0, self.shifted.shape[0], self._step):
            part = slice(start, start + self._step)
            block = self.shifted[part]
            yield part, block if self.all_finite else np.where(np.isfinite(block), block, 0.0)

    def constant(self):
        """Whether every row is constant (over its finite entries): L does not depend on T."""
        return not any(finite.any() for _, finite in self._blocks())

    def separated(self):
        """Whether every label (with weight) is at its row's maximum: L decreases to T = 0."""
        return not (self.target < 0).any()

    def slope_at_zero(self):
        """``L'(0)``: the mean over each row's finite entries, less the target."""
        mean = np.empty_like(self.target)
        for part, finite in self._blocks():
            mean[part] = finite.sum(axis=1) / np.isfinite(self.shifted[part]).sum(axis=1)
        return float(np.dot(self.weight, mean - self.target))

    def evaluate(self, beta, *, second=True):
        """``(L(β), L'(β), L''(β))`` (the last is None without ``second``)."""
        temperature = 1.0 / beta
        log_normalizer = np.empty_like(self.target)
        mean = np.empty_like(self.target)
        variance = np.empty_like(self.target) if second else None
        for part, finite in self._blocks():
            block = self.shifted[part]
            p = self._probabilities[: block.shape[0]]
            stats = _kernels.softmax_stats(block, p, temperature=temperature)
            if stats is NotImplemented:
                p[...] = softmax(block, temperature=temperature)
                log_normalizer[part] = logsumexp(block, temperature=temperature)
            else:
                log_normalizer[part] = stats[:, 1]  # the row maximum of d is 0
            mean[part] = np.einsum("ij,ij->i", p, finite)
            if second:
                # The variance about the mean, not E[d^2] - E[d]^2, which cancels when
                # the mass is spread over many classes.
                centred = finite - mean[part, None]
                variance[part] = np.einsum("ij,ij,ij->i", p, centred, centred)
        loss = float(np.dot(self.weight, log_normalizer - beta * self.target))
        slope = float(np.dot(self.weight, mean - self.target))
        if not second:
            return loss, slope, None
        return loss, slope, float(np.dot(self.weight, variance))


def _root(problem, low, high):
    """The root of L' in [low, high], where L'(low) < 0 < L'(high): rtsafe."""
    beta = min(max(1.0, low), high)
    step_before = step = high - low
    for _ in range(_MAX_ITERATIONS):
        _, slope, curvature = problem.evaluate(beta)
        if slope == 0.0:
            return beta
        if slope < 0:
            low = beta
        else:
            high = beta
        newton = beta - slope / curvature if curvature > 0 else math.nan
        if abs(newton - beta) <= _STEP_TOLERANCE * beta:
            # Converged; the step may round onto (or just past) an end of the bracket.
            return min(max(newton, low), high)
        # Bisect (geometrically: β spans decades) when Newton leaves the bracket or
        # does not halve the step of two iterations ago.
        if not low < newton < high or abs(2.0 * slope) > abs(step_before * curvature):
            following = math.sqrt(low * high)
        else:
            following = newton
        step_before, step = step, following - beta
        beta = following
        if abs(step) <= _STEP_TOLERANCE * beta or high - low <= _STEP_TOLERANCE * beta:
            return beta
    raise RuntimeError(  # pragma: no cover - bisection alone converges well within this
        f"fit_temperature did not converge in {_MAX_ITERATIONS} iterations"
    )


def solve_temperature(data, bounds):
    """``(T, status)``: status is None, or why T is a bound ("separated", "below",
    "uninformative", "above")."""
    problem = TemperatureProblem(data)
    if problem.constant():
        raise ValueError(
            "logits: every row is constant, so the likelihood does not depend on the "
            "temperature"
        )
    t_low, t_high = bounds
    beta_low, beta_high = 1.0 / t_high, 1.0 / t_low
    slope_low = problem.evaluate(beta_low, second=False)[1]
    if slope_low >= 0:
        return t_high, "uninformative" if problem.slope_at_zero() >= 0 else "above"
    slope_high = problem.evaluate(beta_high, second=False)[1]
    if slope_high <= 0:
        return t_low, "separated" if problem.separated() else "below"
    return 1.0 / _root(problem, beta_low, beta_high), None


_MESSAGES = {
    "separated": "the logits separate the labels perfectly (every label is its row's arg "
    "max), so the likelihood increases all the way to T -> 0; returning the lower bound "
    "T = {low!r}",
    "below": "the optimal temperature lies below the lower bound; returning T = {low!r}",
    "uninformative": "the logits carry no information on the labels (or point away from "
    "them), so the likelihood increases all the way to T -> inf; returning the upper "
    "bound T = {high!r}",
    "above": "the optimal temperature lies above the upper bound; returning T = {high!r}",
}


def warn_bound(status, bounds, stacklevel):
    if status is not None:
        message = _MESSAGES[status].format(low=bounds[0], high=bounds[1])
        warnings.warn(message, CalibrationWarning, stacklevel=stacklevel + 1)


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    bounds: Sequence[Real] = (1e-2, 1e2),
    ignore_index: Int = -100,
) -> float:
    r"""The temperature ``T`` that minimises the NLL of ``labels`` under ``softmax(logits / T)``.

    Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017): one scalar, fitted on
    held-out data, that divides the logits of a trained model so that its
    confidence matches its accuracy. It changes no prediction (the arg max of each
    row stays), only the probabilities.

    Parameters
    ----------
    logits : array_like
        Scores of shape ``(..., classes, ...)``: NumPy, PyTorch, JAX, CuPy, Dask,
        TensorFlow or ``array_api_strict`` arrays, or lists. ``-inf`` marks a class
        that takes no part in its row.
    labels : array_like
        Integer class indices (the shape of ``logits`` without ``axis``), or class
        probabilities of floating dtype (the shape of ``logits``; soft targets).
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        One weight >= 0 per sample (the shape of ``logits`` without ``axis``).
    bounds : (float, float), default (0.01, 100)
        The range searched, ``0 < low < high < inf``.
    ignore_index : int, default -100
        A class index that marks a sample taking no part (as in
        :func:`softmaxkit.cross_entropy`).

    Returns
    -------
    float
        The temperature, to a relative tolerance of 1e-10.

    Raises
    ------
    ValueError
        For labels out of range, a NaN or ``+inf`` logit, a labelled class with logit
        ``-inf``, no samples, every label ignored or weighted 0, rows that are all
        constant (nothing to fit), or invalid bounds.

    Warns
    -----
    CalibrationWarning
        When the optimum lies at or beyond a bound, which is returned: the lower one
        when the logits separate the labels perfectly (the NLL decreases all the way
        to ``T -> 0``), the upper one when they carry no information on the labels
        (``T -> inf``); the message says which.

    Notes
    -----
    The NLL is convex in ``β = 1/T`` with derivatives ``mean(E_p[z] - z_y)`` and
    ``mean(Var_p[z])``; its minimiser is found by Newton's method on ``β``,
    safeguarded by bisection, each step one pass of the compiled kernel over the
    logits (NumPy float64) and two row-wise sums. The computation runs on a host
    float64 copy of the inputs.

    See Also
    --------
    fit_vector_scaling, fit_matrix_scaling, expected_calibration_error

    Examples
    --------
    Three of four samples right with logit 4 against 0, 0: the NLL
    ``4 log(exp(4/T) + 2) - 12/T`` is least at ``exp(4/T) = 6``.

    >>> import math
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
    >>> labels = np.array([0, 1, 2, 1])
    >>> t = smk.fit_temperature(logits, labels)
    >>> math.isclose(t, 4 / math.log(6), rel_tol=1e-10)
    True
    >>> probs = smk.softmax(logits, temperature=t)
    >>> bool((probs.argmax(-1) == logits.argmax(-1)).all())
    True
    """
    bounds = check_bounds(bounds)
    ignore_index = check_int("ignore_index", ignore_index)
    data = labelled(logits, labels, axis=axis, weight=weight, ignore_index=ignore_index)
    temperature, status = solve_temperature(data, bounds)
    warn_bound(status, bounds, stacklevel=2)
    return float(temperature)
