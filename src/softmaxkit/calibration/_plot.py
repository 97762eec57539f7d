"""The reliability diagram: accuracy against confidence per bin, before and after calibration.

Built without ``pyplot``, like the figures of :mod:`softmaxkit.plot`; matplotlib
is imported only when a diagram is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .._lib._typing import ArrayLike, Axes, Figure, Int, Real
from ._metrics import _check_binning, _scored, bin_statistics, top_label

__all__ = ["reliability_diagram"]

_ACCURACY = "#3b75af"
_GAP = "#d1495b"
_COUNTS = "#8c8c8c"


def _statistics(scores, labels, from_logits, axis, n_bins, strategy, weight):
    data, probs, _ = _scored(scores, labels, axis, weight, from_logits)
    confidence, outcome = top_label(probs, data)
    edges, mass, mean_confidence, accuracy = bin_statistics(
        confidence, outcome, data.weight, n_bins, strategy
    )
    share = mass / mass.sum()
    filled = mass > 0
    ece = float(np.dot(share[filled], np.abs(accuracy[filled] - mean_confidence[filled])))
    overall = (float(np.dot(data.weight, outcome)), float(np.dot(data.weight, confidence)))
    return edges, share, mean_confidence, accuracy, ece, overall


def _draw_reliability(axes, statistics, title):
    edges, share, mean_confidence, accuracy, ece, _ = statistics
    filled = share > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    axes.plot(
        [0, 1], [0, 1], linestyle="--", color="0.35", linewidth=1, label="perfect calibration"
    )
    axes.bar(
        left, accuracy[filled], width=width, align="edge", color=_ACCURACY,
        edgecolor="white", linewidth=0.8, label="accuracy",
    )
    gap = mean_confidence[filled] - accuracy[filled]
    axes.bar(
        left, gap, bottom=accuracy[filled], width=width, align="edge", color=_GAP,
        alpha=0.35, edgecolor=_GAP, hatch="//", linewidth=0.6,
        label="gap to the mean confidence",
    )
    axes.plot([], [], " ", label=f"ECE = {100 * ece:.2f}%")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_aspect("auto")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small", frameon=False)
    axes.grid(alpha=0.25)


def _draw_counts(axes, statistics):
    edges, share, _, _, _, (accuracy, confidence) = statistics
    axes.bar(
        edges[:-1], 100 * share, width=np.diff(edges), align="edge", color=_COUNTS,
        edgecolor="white", linewidth=0.8,
    )
    axes.axvline(accuracy, color=_ACCURACY, linewidth=1.5, label=f"accuracy {100 * accuracy:.1f}%")
    axes.axvline(
        confidence, color=_GAP, linewidth=1.5, linestyle="--",
        label=f"mean confidence {100 * confidence:.1f}%",
    )
    axes.set_xlim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("% of samples")
    axes.legend(loc="upper left", fontsize="small", framealpha=0.85, edgecolor="none")
    axes.grid(alpha=0.25)


def _counts_below(axes):
    """A new axes for the counts, carved from the bottom of ``axes`` (the caller's)."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    return make_axes_locatable(axes).append_axes("bottom", size="33%", pad=0.12, sharex=axes)


def reliability_diagram(
    probs_or_logits: ArrayLike,
    labels: ArrayLike,
    *,
    from_logits: bool = False,
    calibrated: ArrayLike | None = None,
    axis: Int = -1,
    n_bins: Int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    weight: ArrayLike | None = None,
    titles: Sequence[str] = ("before calibration", "after calibration"),
    ax: Axes | Sequence[Axes] | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: Real = 100,
) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, with the bin counts.

    Each bar is a bin of the top-label confidence: its height is the accuracy of
    the bin, the hatched part up to the bin's mean confidence is the gap (above the
    bar: over-confident; below: under-confident), and the dashed diagonal is
    perfect calibration. The ECE is in the legend. Under each diagram, a histogram
    gives the share of samples in each bin, with the overall accuracy and mean
    confidence. With ``calibrated=``, the calibrated scores are drawn beside the
    original ones.

    Parameters
    ----------
    probs_or_logits : array_like
        Probabilities, or logits with ``from_logits=True``, of any supported library.
    labels : array_like
        Integer class indices or class probabilities, as in
        :func:`softmaxkit.expected_calibration_error`.
    from_logits : bool, default False
        Whether the scores (and ``calibrated``) are logits.
    calibrated : array_like, optional
        The calibrated scores of the same samples (probabilities, or logits with
        ``from_logits=True``), drawn on the right.
    axis : int, default -1
        The class axis.
    n_bins : int, default 15
        The number of bins.
    strategy : {"uniform", "quantile"}, default "uniform"
        As in :func:`softmaxkit.expected_calibration_error`; quantile bins are drawn
        with their own widths.
    weight : array_like, optional
        One weight >= 0 per sample.
    titles : (str, str), default ("before calibration", "after calibration")
        The titles of the two diagrams (the first alone without ``calibrated``).
    ax : matplotlib Axes or a pair of them, optional
        Draw into these axes (one, or two with ``calibrated``) instead of a new
        figure; the histogram of the counts takes the bottom third of each.
    figsize : (float, float), optional
        The size of a new figure, in inches.
    dpi : int, default 100
        The resolution of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax``'s figure when ``ax`` is given).

    Raises
    ------
    ValueError
        As :func:`softmaxkit.expected_calibration_error`, or for ``ax`` that does not
        hold one axes per diagram.
    ImportError
        Without matplotlib (the ``plot`` extra).

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=500)
    >>> logits = 4 * (rng.normal(size=(500, 3)) + 1.5 * np.eye(3)[labels])
    >>> t = smk.fit_temperature(logits, labels)
    >>> fig = smk.reliability_diagram(logits, labels, from_logits=True, calibrated=logits / t)
    >>> [a.get_title() for a in fig.axes[:2]]
    ['before calibration', 'after calibration']
    """
    _check_binning(n_bins, strategy, "l1")
    sets = [probs_or_logits] if calibrated is None else [probs_or_logits, calibrated]
    titles = tuple(titles)
    if len(titles) < len(sets) or not all(isinstance(t, str) for t in titles):
        raise ValueError(f"titles must hold {len(sets)} strings, got {titles!r}")
    statistics = [
        _statistics(scores, labels, from_logits, axis, n_bins, strategy, weight)
        for scores in sets
    ]
    if ax is not None:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) != len(sets):
            raise ValueError(
                f"ax must hold {len(sets)} axes (one per diagram), got {len(axes)}"
            )
        for target, stats, title in zip(axes, statistics, titles):
            _draw_reliability(target, stats, title)
            target.tick_params(labelbottom=False)
            _draw_counts(_counts_below(target), stats)
        return axes[0].figure

    from ..plot import _figure

    columns = len(sets)
    figure = _figure(figsize or (5.2 * columns, 6.0), dpi)
    grid = figure.add_gridspec(2, columns, height_ratios=(3, 1))
    # The diagrams first, so that figure.axes lists them before the histograms.
    tops = [figure.add_subplot(grid[0, column]) for column in range(columns)]
    for column, (top, stats, title) in enumerate(zip(tops, statistics, titles)):
        bottom = figure.add_subplot(grid[1, column], sharex=top)
        _draw_reliability(top, stats, title)
        top.tick_params(labelbottom=False)
        _draw_counts(bottom, stats)
    return figure
