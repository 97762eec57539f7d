"""Calibration metrics: ECE (and RMS and maximum calibration error), classwise ECE,
the Brier score and the negative log-likelihood.

Each takes probabilities, or logits with ``from_logits=True`` (never guessed:
probabilities are checked to lie in [0, 1] with rows that sum to 1), and labels as
class indices (integer dtype) or class probabilities (floating dtype, the shape of
the scores). Soft labels generalise the definitions: a sample's "correctness" is
the target probability of the predicted class. The result is a Python float,
computed on a host float64 copy of the inputs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .._lib._typing import ArrayLike, Int
from .._lib._validation import check_choice, check_flag, check_int
from .._softmax import log_softmax
from ._inputs import labelled

__all__ = [
    "expected_calibration_error",
    "classwise_ece",
    "brier_score",
    "negative_log_likelihood",
]

STRATEGIES = ("uniform", "quantile")
NORMS = ("l1", "l2", "max")


def _scored(probs_or_logits, labels, axis, weight, from_logits):
    """The rows of probabilities (and log-probabilities for logits), and the labels."""
    from_logits = check_flag("from_logits", from_logits)
    data = labelled(
        probs_or_logits,
        labels,
        axis=axis,
        weight=weight,
        scores_name="probs_or_logits",
        from_logits=from_logits,
    )
    if from_logits:
        log_probs = log_softmax(data.values)
        probs = np.exp(log_probs)
    else:
        probs, log_probs = data.values, None
    return data, probs, log_probs


def bin_edges(confidence, weight, n_bins, strategy):
    """The ``n_bins + 1`` edges of the bins ``[e0, e1], (e1, e2], ..., (e_{M-1}, e_M]``.

    ``uniform``: equal widths over [0, 1]. ``quantile``: each bin holds about the same
    weight of samples (an edge is the smallest confidence whose cumulative weight
    reaches ``m / M``; equal confidences stay in one bin, so some bins may be empty).
    """
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    order = np.argsort(confidence, kind="stable")
    cumulative = np.cumsum(weight[order])
    # The running sum is rounded (by up to n ulp): a sample whose cumulative weight
    # reaches m/M up to that rounding closes bin m, so that 600 samples in 4 bins
    # are 150 each.
    slack = 1.0 - 4.0 * order.size * np.finfo(np.float64).eps
    quantiles = np.arange(1, n_bins) / n_bins * cumulative[-1] * slack
    positions = np.minimum(np.searchsorted(cumulative, quantiles, side="left"), order.size - 1)
    inner = confidence[order][positions]
    return np.concatenate([[0.0], inner, [1.0]])


def bin_statistics(confidence, outcome, weight, n_bins, strategy):
    """Per bin: ``(edges, weight, mean confidence, mean outcome)``; empty bins have weight 0
    and NaN means."""
    edges = bin_edges(confidence, weight, n_bins, strategy)
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    mass = np.bincount(index, weights=weight, minlength=n_bins)
    confidence_sum = np.bincount(index, weights=weight * confidence, minlength=n_bins)
    outcome_sum = np.bincount(index, weights=weight * outcome, minlength=n_bins)
    filled = mass > 0
    safe = np.where(filled, mass, 1.0)
    mean_confidence = np.where(filled, confidence_sum / safe, np.nan)
    mean_outcome = np.where(filled, outcome_sum / safe, np.nan)
    return edges, mass, mean_confidence, mean_outcome


def _calibration_error(confidence, outcome, weight, n_bins, strategy, norm):
    _, mass, mean_confidence, mean_outcome = bin_statistics(
        confidence, outcome, weight, n_bins, strategy
    )
    filled = mass > 0
    gap = np.abs(mean_outcome[filled] - mean_confidence[filled])
    share = mass[filled] / mass.sum()
    if norm == "l1":
        return float(np.dot(share, gap))
    if norm == "l2":
        return float(np.sqrt(np.dot(share, gap * gap)))
    return float(gap.max())


def _check_binning(n_bins, strategy, norm):
    check_int("n_bins", n_bins, low=1)
    check_choice("strategy", strategy, STRATEGIES)
    check_choice("norm", norm, NORMS)


def top_label(probs, data):
    """``(confidence, correctness)`` of each row: the top probability, and the target
    probability of the predicted class (1 or 0 for class indices)."""
    predicted = probs.argmax(axis=1)
    rows = np.arange(probs.shape[0])
    confidence = probs[rows, predicted]
    if data.index is not None:
        outcome = (predicted == data.index).astype(np.float64)
    else:
        outcome = data.target[rows, predicted]
    return confidence, outcome


def expected_calibration_error(
    probs_or_logits: ArrayLike,
    labels: ArrayLike,
    *,
    from_logits: bool = False,
    axis: Int = -1,
    n_bins: Int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    norm: Literal["l1", "l2", "max"] = "l1",
    weight: ArrayLike | None = None,
) -> float:
    r"""Expected calibration error of the top label (Naeini et al. 2015; Guo et al. 2017).

    The confidences (the largest probability of each row) are grouped into bins;
    in each bin the accuracy is compared with the mean confidence:

        ECE = sum_b (n_b / N) |acc_b - conf_b|          (norm="l1")
        RMS = sqrt(sum_b (n_b / N) (acc_b - conf_b)^2)  (norm="l2")
        MCE = max_b |acc_b - conf_b|                   (norm="max", over non-empty bins)

    Parameters
    ----------
    probs_or_logits : array_like
        Probabilities (rows in [0, 1] summing to 1), or logits with
        ``from_logits=True``; any supported array library.
    labels : array_like
        Integer class indices (the shape of the scores without ``axis``), or class
        probabilities of floating dtype (the shape of the scores).
    from_logits : bool, default False
        Whether the scores are logits (softmax is applied) or probabilities.
    axis : int, default -1
        The class axis.
    n_bins : int, default 15
        The number of bins.
    strategy : {"uniform", "quantile"}, default "uniform"
        Bins of equal width over [0, 1], or holding equal numbers of samples.
    norm : {"l1", "l2", "max"}, default "l1"
        ECE, RMS calibration error, or maximum calibration error.
    weight : array_like, optional
        One weight >= 0 per sample (``n_b`` and the means are weighted).

    Returns
    -------
    float
        The calibration error, in [0, 1].

    Raises
    ------
    ValueError
        For probabilities outside [0, 1] or rows that do not sum to 1 (pass
        ``from_logits=True`` for logits), labels out of range, mismatched shapes,
        or an unknown ``strategy``/``norm``.

    Notes
    -----
    Bin ``b`` of ``M`` (uniform) holds the confidences in ``((b-1)/M, b/M]``.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    >>> labels = [0, 1, 1, 0]
    >>> round(smk.expected_calibration_error(probs, labels, n_bins=5), 6)
    0.25
    >>> round(smk.expected_calibration_error(probs, labels, n_bins=5, norm="max"), 6)
    0.4
    """
    _check_binning(n_bins, strategy, norm)
    data, probs, _ = _scored(probs_or_logits, labels, axis, weight, from_logits)
    confidence, outcome = top_label(probs, data)
    return _calibration_error(confidence, outcome, data.weight, n_bins, strategy, norm)


def classwise_ece(
    probs_or_logits: ArrayLike,
    labels: ArrayLike,
    *,
    from_logits: bool = False,
    axis: Int = -1,
    n_bins: Int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    norm: Literal["l1", "l2", "max"] = "l1",
    weight: ArrayLike | None = None,
) -> float:
    r"""Classwise calibration error: the calibration error of every class, averaged.

    For each class ``k``, the probabilities ``p_k`` of all samples are binned and,
    in each bin, the frequency of class ``k`` is compared with the mean ``p_k``
    (Kull et al. 2019; the "static calibration error" of Nixon et al. 2019); the
    result is the mean over the classes. Unlike
    :func:`expected_calibration_error` it sees the calibration of every class, not
    only of the predicted one.

    Parameters
    ----------
    probs_or_logits, labels, from_logits, axis, n_bins, strategy, norm, weight
        As in :func:`expected_calibration_error` (quantile bins are per class).

    Returns
    -------
    float
        The mean over the classes of their calibration error.

    Raises
    ------
    ValueError
        As :func:`expected_calibration_error`.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    >>> round(smk.classwise_ece(probs, [0, 1, 1, 0], n_bins=5), 6)
    0.375
    """
    _check_binning(n_bins, strategy, norm)
    data, probs, _ = _scored(probs_or_logits, labels, axis, weight, from_logits)
    target = data.one_hot()
    errors = [
        _calibration_error(probs[:, k], target[:, k], data.weight, n_bins, strategy, norm)
        for k in range(data.n_classes)
    ]
    return float(np.mean(errors))


def brier_score(
    probs_or_logits: ArrayLike,
    labels: ArrayLike,
    *,
    from_logits: bool = False,
    axis: Int = -1,
    weight: ArrayLike | None = None,
) -> float:
    r"""The multi-class Brier score: ``mean_i sum_k (p_ik - y_ik)^2`` (Brier 1950).

    ``y_i`` is the one-hot vector of the label (or the label's probabilities). The
    score is summed over the classes, as Brier defined it (so it lies in [0, 2]);
    ``sklearn.metrics.brier_score_loss`` of two classes is half of it.

    Parameters
    ----------
    probs_or_logits, labels, from_logits, axis, weight
        As in :func:`expected_calibration_error`.

    Returns
    -------
    float
        The (weighted) mean over the samples.

    Raises
    ------
    ValueError
        As :func:`expected_calibration_error`.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> round(smk.brier_score([[0.9, 0.1], [0.8, 0.2]], [0, 1]), 6)
    0.65
    """
    data, probs, _ = _scored(probs_or_logits, labels, axis, weight, from_logits)
    difference = probs - data.one_hot()
    return float(np.dot(data.weight, np.einsum("ij,ij->i", difference, difference)))


def negative_log_likelihood(
    probs_or_logits: ArrayLike,
    labels: ArrayLike,
    *,
    from_logits: bool = False,
    axis: Int = -1,
    weight: ArrayLike | None = None,
) -> float:
    r"""The mean negative log-likelihood of the labels: ``mean_i -log p_i[y_i]``.

    With logits the log-probabilities come from :func:`softmaxkit.log_softmax`
    (no ``log`` of a rounded probability); with soft labels it is the
    cross-entropy ``-sum_k y_ik log p_ik``.

    Parameters
    ----------
    probs_or_logits, labels, from_logits, axis, weight
        As in :func:`expected_calibration_error`.

    Returns
    -------
    float
        The (weighted) mean over the samples; ``inf`` when a label has probability 0.

    Raises
    ------
    ValueError
        As :func:`expected_calibration_error`.

    Examples
    --------
    >>> import math
    >>> import softmaxkit as smk
    >>> nll = smk.negative_log_likelihood([[0.5, 0.5], [0.9, 0.1]], [0, 0])
    >>> math.isclose(nll, (math.log(2) - math.log(0.9)) / 2)
    True
    >>> smk.negative_log_likelihood([[0.0, 1.0], [1.0, 0.0]], [1, 0])
    0.0
    """
    data, probs, log_probs = _scored(probs_or_logits, labels, axis, weight, from_logits)
    if log_probs is None:
        with np.errstate(divide="ignore"):
            log_probs = np.log(probs)
    keep = data.weight > 0  # a weight of 0 takes no part, even where p_y = 0
    target = data.one_hot()[keep]
    terms = target * np.where(target > 0, log_probs[keep], 0.0)
    return float(0.0 - np.dot(data.weight[keep], terms.sum(axis=1)))
