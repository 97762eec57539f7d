"""Figures of softmax: temperature, activations, cross-entropy, the Jacobian, sparse.

Each function returns a matplotlib :class:`~matplotlib.figure.Figure` (shown
by notebooks; ``fig.savefig(path)`` writes it), built without ``pyplot`` so that
no global figure state or GUI backend is touched. matplotlib is the optional
extra ``plot`` (``pip install "softmaxkit[plot]"``) and is imported only when a
figure is drawn. The plotted numbers come from softmaxkit itself.

``KINDS`` maps the names used by ``softmax plot KIND`` to the functions; a new
figure is a function here and an entry there.

Examples
--------
>>> import softmaxkit as smk
>>> fig = smk.plot.jacobian([1.0, 3.0, 2.0])
>>> fig.axes[0].get_title()
'softmax Jacobian  dp_i/dx_j = p_i (δ_ij − p_j)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._lib._typing import ArrayLike, Axes, Figure, Real
from ._softmax import log_softmax, softmax
from .calibration._plot import reliability_diagram
from .sparse import entmax15, sparsemax

__all__ = [
    "temperature",
    "activations",
    "cross_entropy",
    "jacobian",
    "sparse",
    "draw_sparse",
    "reliability_diagram",
    "KINDS",
]

# The Q-values of the classic Boltzmann-exploration example.
DEFAULT_SCORES = (1.0, 2.0, 0.5, 1.5)
DEFAULT_TEMPERATURES = (0.1, 1.0, 5.0)
# Logits of the sparse figure: a few close leaders and a tail that the sparse maps cut off.
DEFAULT_SPARSE_LOGITS = (2.2, 1.9, 1.1, 0.6, 0.2, -0.4, -1.0, -1.7)


def _figure(figsize, dpi):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            'softmaxkit.plot needs matplotlib: pip install "softmaxkit[plot]"'
        ) from error
    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _vector(x, default, name="x"):
    vector = np.asarray(default if x is None else x, dtype=np.float64)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D vector of scores, got shape {vector.shape}"
        )
    return vector


def _entropy(p, log_p, axis=-1):
    """Shannon entropy ``-sum(p log p)`` in nats, with ``0 log 0 = 0``."""
    safe_log_p = np.where(p > 0, log_p, 0.0)
    return -np.sum(p * safe_log_p, axis=axis)


def temperature(
    x: ArrayLike | None = None,
    /,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    figsize: tuple[float, float] = (10, 4),
    dpi: Real = 100,
) -> Figure:
    """Softmax of ``x`` at several temperatures, and its entropy as a function of ``T``.

    Parameters
    ----------
    x : array_like, optional
        A vector of scores; by default the Q-values ``[1, 2, 0.5, 1.5]``.
    temperatures : sequence of float
        The temperatures of the bar chart (low ones concentrate the mass on the
        maximum, high ones spread it towards uniform).
    figsize, dpi
        Size of the figure in inches and its resolution.

    Returns
    -------
    matplotlib.figure.Figure
        Left: grouped bars of ``softmax(x, temperature=T)``. Right: the entropy
        over ``T`` from 0.01 to 100 (log scale), which rises from 0 (greedy) to
        ``log n`` (uniform).

    Examples
    --------
    >>> import softmaxkit as smk
    >>> fig = smk.plot.temperature([1.0, 2.0, 0.5, 1.5], temperatures=(0.5, 2.0))
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['T = 0.5', 'T = 2']
    """
    scores = _vector(x, DEFAULT_SCORES)
    temperatures = tuple(float(t) for t in temperatures)
    fig = _figure(figsize, dpi)
    bars_axes, entropy_axes = fig.subplots(1, 2, width_ratios=(3, 2))

    positions = np.arange(scores.size)
    width = 0.8 / len(temperatures)
    for k, t in enumerate(temperatures):
        offset = (k - (len(temperatures) - 1) / 2) * width
        bars_axes.bar(positions + offset, softmax(scores, temperature=t), width, label=f"T = {t:g}")
    bars_axes.set_xticks(positions, [f"x{i} = {v:g}" for i, v in enumerate(scores)])
    bars_axes.set_ylabel("probability")
    bars_axes.set_ylim(0, 1)
    bars_axes.set_title("softmax(x / T)")
    bars_axes.legend()

    grid = np.logspace(-2, 2, 241)
    rows = np.broadcast_to(scores, (grid.size, scores.size))
    p = softmax(rows, temperature=grid[:, None])
    curve = _entropy(p, log_softmax(rows, temperature=grid[:, None]))
    entropy_axes.semilogx(grid, curve, label="entropy H(T)")
    entropy_axes.axhline(
        math.log(scores.size), color="gray", linestyle="--", label="log n (uniform)"
    )
    marked = np.asarray([t for t in temperatures if 0 < t < math.inf])
    if marked.size:
        marked_rows = np.broadcast_to(scores, (marked.size, scores.size))
        entropy_axes.plot(
            marked,
            _entropy(
                softmax(marked_rows, temperature=marked[:, None]),
                log_softmax(marked_rows, temperature=marked[:, None]),
            ),
            "o",
            color="black",
            label="the temperatures on the left",
        )
    entropy_axes.set_xlabel("temperature T")
    entropy_axes.set_ylabel("entropy (nats)")
    entropy_axes.set_title("entropy of softmax(x / T)")
    entropy_axes.legend(loc="center right")
    return fig


def activations(
    z: ArrayLike | None = None, /, *, figsize: tuple[float, float] = (10, 4), dpi: Real = 100
) -> Figure:
    """Softmax of the two-class sweep ``[z, 0]`` next to sigmoid, tanh and ReLU.

    Parameters
    ----------
    z : array_like, optional
        The sweep, by default 241 points from -6 to 6.
    figsize, dpi
        Size of the figure in inches and its resolution.

    Returns
    -------
    matplotlib.figure.Figure
        Left: ``softmax([z, 0])[0]``, which is ``sigmoid(z)`` exactly, with
        ``tanh(z)`` and ``relu(z)``. Right: their derivatives; softmax's is the
        Jacobian's diagonal ``p (1 - p)``.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> fig = smk.plot.activations()
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['softmax([z, 0])[0]', 'sigmoid(z)', 'tanh(z)', 'ReLU(z)']
    """
    sweep = _vector(z, np.linspace(-6.0, 6.0, 241), name="z")
    two_class = np.stack([sweep, np.zeros_like(sweep)], axis=-1)
    p = softmax(two_class)[:, 0]
    # 1 / (1 + exp(-z)) with exp(-|z|) <= 1: no overflow, full relative accuracy for z < 0.
    decay = np.exp(-np.abs(sweep))
    sigmoid = np.where(sweep >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))
    tanh = np.tanh(sweep)
    relu = np.maximum(sweep, 0.0)

    fig = _figure(figsize, dpi)
    values_axes, slopes_axes = fig.subplots(1, 2, sharex=True)
    values_axes.plot(sweep, p, linewidth=4, alpha=0.5, label="softmax([z, 0])[0]")
    values_axes.plot(sweep, sigmoid, "k--", label="sigmoid(z)")
    values_axes.plot(sweep, tanh, label="tanh(z)")
    values_axes.plot(sweep, relu, label="ReLU(z)")
    values_axes.set_ylim(-1.1, 2.1)
    values_axes.set_xlabel("z")
    values_axes.set_title("activations")
    values_axes.legend()

    slopes_axes.plot(sweep, p * (1.0 - p), linewidth=4, alpha=0.5, label="softmax: p (1 − p)")
    slopes_axes.plot(sweep, sigmoid * (1.0 - sigmoid), "k--", label="sigmoid: σ (1 − σ)")
    # 1 - tanh(z)^2 = 4 e^(-2|z|) / (1 + e^(-2|z|))^2, without the cancellation of 1 - tanh^2
    decay_twice = decay * decay
    tanh_slope = 4.0 * decay_twice / (1.0 + decay_twice) ** 2
    slopes_axes.plot(sweep, tanh_slope, label="tanh: 1 − tanh²")
    slopes_axes.plot(sweep, (sweep > 0).astype(np.float64), label="ReLU: step")
    slopes_axes.set_ylim(-0.1, 1.1)
    slopes_axes.set_xlabel("z")
    slopes_axes.set_title("derivatives")
    slopes_axes.legend()
    return fig


def cross_entropy(*, figsize: tuple[float, float] = (10, 4), dpi: Real = 100) -> Figure:
    """The log-loss curves, and the softmax cross-entropy over two logits.

    Returns
    -------
    matplotlib.figure.Figure
        Left: ``−log z`` and ``−log(1 − z)`` over ``z`` in (0, 1), the loss when
        the true class has probability ``z`` or ``1 − z``, computed as
        ``−log_softmax([t, 0])`` over a sweep of the logit ``t`` (no ``log(0)``).
        Right: ``−log_softmax([a, b])[0]`` over the logits ``a`` (true class)
        and ``b``; it depends only on ``a − b``.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> fig = smk.plot.cross_entropy()
    >>> fig.axes[1].get_xlabel()
    'logit a of the true class'
    """
    fig = _figure(figsize, dpi)
    curves_axes, surface_axes = fig.subplots(1, 2)

    logit = np.linspace(-9.0, 9.0, 361)
    pairs = np.stack([logit, np.zeros_like(logit)], axis=-1)
    z = softmax(pairs)[:, 0]
    losses = -log_softmax(pairs)
    curves_axes.plot(z, losses[:, 0], label="−log z  (true class has z)")
    curves_axes.plot(z, losses[:, 1], label="−log(1 − z)  (true class has 1 − z)")
    curves_axes.set_xlim(0, 1)
    curves_axes.set_ylim(0, 6)
    curves_axes.set_xlabel("predicted probability z")
    curves_axes.set_ylabel("loss (nats)")
    curves_axes.set_title("log loss")
    curves_axes.legend()

    axis = np.linspace(-5.0, 5.0, 201)
    a, b = np.meshgrid(axis, axis)
    surface = -log_softmax(np.stack([a, b], axis=-1))[..., 0]
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    image = surface_axes.imshow(surface, origin="lower", extent=extent, cmap="viridis")
    surface_axes.contour(
        a, b, surface, levels=[0.1, 0.5, 1, 2, 4, 8], colors="white", linewidths=0.6
    )
    fig.colorbar(image, ax=surface_axes, label="cross-entropy (nats)")
    surface_axes.set_xlabel("logit a of the true class")
    surface_axes.set_ylabel("logit b of the other class")
    surface_axes.set_title("−log softmax([a, b])[0]")
    return fig


def jacobian(
    x: ArrayLike | None = None, /, *, figsize: tuple[float, float] = (5, 4.2), dpi: Real = 100
) -> Figure:
    """Heatmap of the softmax Jacobian ``J = diag(p) − p pᵀ`` of a vector.

    Parameters
    ----------
    x : array_like, optional
        A vector of scores, by default ``[1, 3, 2]``.
    figsize, dpi
        Size of the figure in inches and its resolution.

    Returns
    -------
    matplotlib.figure.Figure
        ``J[i, j] = dp_i / dx_j``, annotated when there are at most 10 entries.
        Its rows and columns sum to 0 (adding a constant to ``x`` changes nothing).

    Examples
    --------
    >>> import softmaxkit as smk
    >>> fig = smk.plot.jacobian([6.0, 3.0])
    >>> fig.axes[0].get_images()[0].get_array().round(4)
    masked_array(
      data=[[ 0.0452, -0.0452],
            [-0.0452,  0.0452]],
      mask=False,
      fill_value=1e+20)
    """
    scores = _vector(x, (1.0, 3.0, 2.0))
    p = softmax(scores)
    matrix = np.diag(p) - np.outer(p, p)

    fig = _figure(figsize, dpi)
    axes = fig.subplots()
    limit = float(np.max(np.abs(matrix))) or 1.0
    image = axes.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
    if scores.size <= 10:
        for (i, j), value in np.ndenumerate(matrix):
            color = "white" if abs(value) > 0.6 * limit else "black"
            axes.text(j, i, f"{value:.3f}", ha="center", va="center", color=color, fontsize=9)
    labels = [f"{v:g}" for v in scores]
    axes.set_xticks(range(scores.size), labels)
    axes.set_yticks(range(scores.size), labels)
    axes.set_xlabel("x_j")
    axes.set_ylabel("x_i")
    axes.set_title("softmax Jacobian  dp_i/dx_j = p_i (δ_ij − p_j)")
    fig.colorbar(image, ax=axes)
    return fig


def draw_sparse(axes: Axes, x: ArrayLike | None = None, /, *, temperature: Real = 1.0) -> Axes:
    """Draw softmax, 1.5-entmax and sparsemax of the same logits on given axes.

    The one drawing of this comparison: :func:`sparse` puts it on a new figure.

    Parameters
    ----------
    axes : matplotlib.axes.Axes
        Where to draw (from ``Figure.subplots()`` or ``pyplot.subplots()``).
    x : array_like, optional
        A vector of logits; by default eight logits from 2.2 down to -1.7.
    temperature : float, default 1.0
        Applied to all three mappings.

    Returns
    -------
    matplotlib.axes.Axes
        ``axes``, with one bar per logit and mapping.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> import softmaxkit as smk
    >>> ax = smk.plot.draw_sparse(Figure().subplots(), [2.0, 1.0, -1.0])
    >>> [t.get_text() for t in ax.get_legend().get_texts()][2]
    'sparsemax (1 of 3 nonzero)'
    """
    row = _vector(x, DEFAULT_SPARSE_LOGITS)
    mappings = [
        ("softmax", softmax(row, temperature=temperature)),
        ("1.5-entmax", entmax15(row, temperature=temperature)),
        ("sparsemax", sparsemax(row, temperature=temperature)),
    ]
    positions = np.arange(row.size)
    width = 0.27
    for i, (label, probabilities) in enumerate(mappings):
        nonzero = int(np.count_nonzero(probabilities))
        axes.bar(
            positions + (i - 1) * width,
            probabilities,
            width,
            label=f"{label} ({nonzero} of {row.size} nonzero)",
        )
    axes.set_xticks(positions, [f"{v:g}" for v in row])
    axes.set_xlabel("logit")
    axes.set_ylabel("probability")
    axes.set_title("The same logits through softmax, 1.5-entmax and sparsemax")
    axes.legend(frameon=False)
    return axes


def sparse(
    x: ArrayLike | None = None,
    /,
    *,
    temperature: Real = 1.0,
    figsize: tuple[float, float] = (8, 3.6),
    dpi: Real = 100,
) -> Figure:
    """Softmax, 1.5-entmax and sparsemax of the same logits, side by side.

    Parameters
    ----------
    x : array_like, optional
        A vector of logits; by default eight logits from 2.2 down to -1.7.
    temperature : float, default 1.0
        Applied to all three mappings.
    figsize, dpi
        Size of the figure in inches and its resolution.

    Returns
    -------
    matplotlib.figure.Figure
        One bar per logit and mapping; each legend entry counts the nonzero
        probabilities (softmax: all of them; the sparse maps cut the tail to 0).

    Examples
    --------
    >>> import softmaxkit as smk
    >>> fig = smk.plot.sparse([2.0, 1.0, -1.0])
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['softmax (3 of 3 nonzero)', '1.5-entmax (2 of 3 nonzero)', 'sparsemax (1 of 3 nonzero)']
    """
    row = _vector(x, DEFAULT_SPARSE_LOGITS)
    fig = _figure(figsize, dpi)
    draw_sparse(fig.subplots(), row, temperature=float(temperature))
    return fig


KINDS = {
    "temperature": temperature,
    "activations": activations,
    "cross-entropy": cross_entropy,
    "jacobian": jacobian,
    "sparse": sparse,
}
