"""softmaxkit.plot: the plotted data are the library's results, and each figure renders.

The plotted arrays are compared with softmaxkit and with an independent formula
(long double, ``logaddexp``, finite differences); each figure is rendered to a
PNG whose size is read from its header.
"""

from __future__ import annotations

import io
import math
import struct
import sys

import numpy as np
import pytest
import scipy.special

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import softmaxkit as smk  # noqa: E402
from softmaxkit import plot  # noqa: E402


def png_size(figure) -> tuple[int, int]:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def reference_softmax(x, temperature=1.0):
    scaled = np.asarray(x, dtype=np.longdouble) / np.longdouble(temperature)
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float64)


def legend_texts(axes):
    return [text.get_text() for text in axes.get_legend().get_texts()]


def test_temperature():
    scores = [1.0, 2.0, 0.5, 1.5]
    fig = plot.temperature(scores, temperatures=(0.1, 1.0, 5.0))
    bars_axes, entropy_axes = fig.axes
    assert legend_texts(bars_axes) == ["T = 0.1", "T = 1", "T = 5"]
    for container, t in zip(bars_axes.containers, (0.1, 1.0, 5.0), strict=True):
        heights = np.asarray([patch.get_height() for patch in container])
        # the figure takes all temperatures in one call; both results are within 4 ulp
        np.testing.assert_allclose(heights, smk.softmax(scores, temperature=t), rtol=2**-50)
        np.testing.assert_allclose(heights, reference_softmax(scores, t), rtol=1e-14)
    assert bars_axes.get_ylabel() == "probability"
    assert entropy_axes.get_xlabel() == "temperature T"
    assert entropy_axes.get_xscale() == "log"
    curve = entropy_axes.get_lines()[0]
    grid, entropy = curve.get_xdata(), curve.get_ydata()
    # log p in long double as (x - max) / T - log1p(sum of the other terms): near T = 0
    # the largest p is 1 - 1e-22, whose log a float64 log(p) would round to 0.
    scaled = np.asarray(scores, dtype=np.longdouble)[None, :] / grid[:, None].astype(np.longdouble)
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    others = np.where(shifted < 0, np.exp(shifted), 0).sum(axis=-1, keepdims=True)
    log_p = shifted - np.log1p(others)
    expected = np.asarray(-np.sum(np.exp(log_p) * log_p, axis=-1), dtype=np.float64)
    np.testing.assert_allclose(entropy, expected, rtol=1e-12, atol=1e-300)
    assert entropy[0] < 1e-3 and entropy[-1] == pytest.approx(math.log(4), rel=1e-4)
    assert "log n (uniform)" in legend_texts(entropy_axes)
    assert png_size(fig) == (1000, 400)


def test_temperature_with_greedy_and_uniform_limits():
    fig = plot.temperature([0.0, 1.0, 1.0], temperatures=(0.0, math.inf))
    heights = [[patch.get_height() for patch in c] for c in fig.axes[0].containers]
    np.testing.assert_array_equal(heights, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    # neither limit has a finite place on the log axis of the entropy
    assert "the temperatures on the left" not in legend_texts(fig.axes[1])


def test_activations():
    fig = plot.activations()
    values_axes, slopes_axes = fig.axes
    lines = {line.get_label(): line for line in values_axes.get_lines()}
    z = lines["softmax([z, 0])[0]"].get_xdata()
    p = lines["softmax([z, 0])[0]"].get_ydata()
    np.testing.assert_array_equal(p, smk.softmax(np.stack([z, 0 * z], axis=-1))[:, 0])
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-14)
    np.testing.assert_allclose(lines["sigmoid(z)"].get_ydata(), p, rtol=1e-14)
    np.testing.assert_array_equal(lines["tanh(z)"].get_ydata(), np.tanh(z))
    np.testing.assert_array_equal(lines["ReLU(z)"].get_ydata(), np.maximum(z, 0))
    slopes = {line.get_label(): line.get_ydata() for line in slopes_axes.get_lines()}
    assert legend_texts(slopes_axes) == list(slopes)
    # the derivative of softmax([z, 0])[0], by central differences
    h = 1e-6
    numeric = (
        smk.softmax(np.stack([z + h, 0 * z], -1))[:, 0]
        - smk.softmax(np.stack([z - h, 0 * z], -1))[:, 0]
    ) / (2 * h)
    np.testing.assert_allclose(slopes["softmax: p (1 − p)"], numeric, atol=1e-9)
    np.testing.assert_allclose(slopes["tanh: 1 − tanh²"], 1 / np.cosh(z) ** 2, rtol=1e-12)
    assert png_size(fig) == (1000, 400)


def test_cross_entropy():
    fig = plot.cross_entropy()
    curves_axes, surface_axes, colorbar_axes = fig.axes
    minus_log_z, minus_log_one_minus_z = curves_axes.get_lines()
    z = minus_log_z.get_xdata()
    assert 0 < z.min() < 1e-3 and 1 - 1e-3 < z.max() < 1
    # -log z is ill-conditioned near z = 1: an absolute tolerance of a few ulp of 1 there
    np.testing.assert_allclose(minus_log_z.get_ydata(), -np.log(z), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(
        minus_log_one_minus_z.get_ydata(), -np.log1p(-z), rtol=1e-9, atol=1e-15
    )
    assert legend_texts(curves_axes)[0].startswith("−log z")
    assert curves_axes.get_xlabel() == "predicted probability z"

    image = surface_axes.get_images()[0]
    surface = np.asarray(image.get_array())
    left, right, bottom, top = image.get_extent()
    a, b = np.meshgrid(np.linspace(left, right, 201), np.linspace(bottom, top, 201))
    np.testing.assert_array_equal(surface, -smk.log_softmax(np.stack([a, b], -1))[..., 0])
    # -log(e^a / (e^a + e^b)) = log(1 + e^(b - a))
    np.testing.assert_allclose(surface, np.logaddexp(0, b - a), rtol=1e-14)
    assert colorbar_axes.get_ylabel() == "cross-entropy (nats)"
    assert surface_axes.get_xlabel() == "logit a of the true class"
    assert png_size(fig) == (1000, 400)


def test_jacobian():
    scores = np.asarray([1.0, 3.0, 2.0, -1.0])
    fig = plot.jacobian(scores)
    axes = fig.axes[0]
    matrix = np.asarray(axes.get_images()[0].get_array())
    p = smk.softmax(scores)
    np.testing.assert_array_equal(matrix, np.diag(p) - np.outer(p, p))
    h = 1e-6
    numeric = np.stack(
        [(smk.softmax(scores + h * e) - smk.softmax(scores - h * e)) / (2 * h) for e in np.eye(4)],
        axis=1,
    )
    np.testing.assert_allclose(matrix, numeric, atol=1e-9)
    np.testing.assert_allclose(matrix.sum(axis=0), 0, atol=4e-16)
    assert len(axes.texts) == 16
    assert [t.get_text() for t in axes.get_xticklabels()] == ["1", "3", "2", "-1"]
    assert png_size(fig) == (500, 420)
    assert png_size(plot.jacobian(np.arange(12.0), dpi=50)) == (250, 210)
    assert not plot.jacobian(np.arange(12.0)).axes[0].texts


def test_jacobian_needs_a_vector():
    with pytest.raises(ValueError, match="1-D vector"):
        plot.jacobian([[1.0, 2.0], [3.0, 4.0]])


def reference_sparsemax(z):
    """Sparsemax by its definition: the Euclidean projection onto the simplex, found by
    sorting (Martins & Astudillo 2016, algorithm 1), in long double."""
    z = np.asarray(z, dtype=np.longdouble)
    ordered = np.sort(z)[::-1]
    cumulative = np.cumsum(ordered)
    k = np.arange(1, z.size + 1)
    support = k[1 + k * ordered > cumulative].max()
    tau = (cumulative[support - 1] - 1) / support
    return np.asarray(np.maximum(z - tau, 0), dtype=np.float64)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sparse(temperature):
    logits = [2.2, 1.9, 1.1, 0.6, -1.0]
    fig = plot.sparse(logits, temperature=temperature)
    (axes,) = fig.axes
    heights = [
        np.asarray([patch.get_height() for patch in container]) for container in axes.containers
    ]
    np.testing.assert_array_equal(heights[0], smk.softmax(logits, temperature=temperature))
    np.testing.assert_array_equal(heights[1], smk.entmax15(logits, temperature=temperature))
    np.testing.assert_array_equal(heights[2], smk.sparsemax(logits, temperature=temperature))
    np.testing.assert_allclose(heights[0], reference_softmax(logits, temperature), rtol=1e-14)
    scaled = np.asarray(logits) / temperature
    np.testing.assert_allclose(heights[2], reference_sparsemax(scaled), rtol=1e-14, atol=1e-16)
    nonzero = [int(np.count_nonzero(h)) for h in heights]
    assert nonzero[0] == 5 and nonzero[2] <= nonzero[1] < 5
    assert legend_texts(axes) == [
        f"softmax ({nonzero[0]} of 5 nonzero)",
        f"1.5-entmax ({nonzero[1]} of 5 nonzero)",
        f"sparsemax ({nonzero[2]} of 5 nonzero)",
    ]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["2.2", "1.9", "1.1", "0.6", "-1"]
    assert axes.get_xlabel() == "logit" and axes.get_ylabel() == "probability"
    assert png_size(fig) == (800, 360)


def test_sparse_default_logits_and_errors():
    fig = plot.sparse()
    assert len(fig.axes[0].containers[0]) == len(plot.DEFAULT_SPARSE_LOGITS)
    with pytest.raises(ValueError, match="1-D"):
        plot.sparse([[1.0, 2.0]])


def test_draw_sparse_on_given_axes_draws_the_bars_of_the_figure():
    fig = plot.sparse([1.0, 0.5, -2.0])
    axes = plot.draw_sparse(matplotlib.figure.Figure().subplots(), [1.0, 0.5, -2.0])
    for ours, theirs in zip(fig.axes[0].containers, axes.containers, strict=True):
        assert [p.get_height() for p in ours] == [p.get_height() for p in theirs]


def test_draw_sparse_draws_three_mappings():
    row = [2.0, 1.0, -1.0]
    axes = plot.draw_sparse(matplotlib.figure.Figure().subplots(), row, temperature=0.5)
    heights = [[bar.get_height() for bar in container] for container in axes.containers]
    # References written another way: softmax by SciPy, sparsemax by its closed form
    # (the support of z = x / T is {2/0.5 = 4}: 4 - 2 > 1, so the top entry takes it all).
    z = np.array(row) / 0.5
    np.testing.assert_allclose(heights[0], scipy.special.softmax(z), rtol=1e-15)
    np.testing.assert_array_equal(heights[2], [1.0, 0.0, 0.0])
    assert math.isclose(sum(heights[1]), 1.0, rel_tol=1e-15) and heights[1][2] == 0.0
    with pytest.raises(ValueError, match="1-D"):
        plot.draw_sparse(matplotlib.figure.Figure().subplots(), np.zeros((2, 2)))


def test_figures_render_to_svg_and_pdf():
    fig = plot.jacobian()
    for fmt, magic in (("svg", b"<?xml"), ("pdf", b"%PDF")):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt)
        assert buffer.getvalue().startswith(magic)


def test_every_kind_is_listed():
    assert set(plot.KINDS) == {
        "temperature",
        "activations",
        "cross-entropy",
        "jacobian",
        "sparse",
    }
    assert all(callable(function) for function in plot.KINDS.values())


def test_figures_do_not_use_pyplot():
    fig = plot.temperature()
    assert fig.canvas.manager is None


def test_a_clear_error_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"softmaxkit\[plot\]"):
        plot.activations()


def test_bandit_figure_plots_the_testbed_results():
    from softmaxkit import _bandit

    results = _bandit.run_testbed(runs=5, steps=15, temperatures=(0.1, 1.0), seed=4)
    fig = _bandit.figure(results, runs=5)
    assert fig.canvas.manager is None
    top, bottom = fig.axes
    assert legend_texts(top) == list(results)
    for line, other, (reward, optimal) in zip(
        top.get_lines(), bottom.get_lines(), results.values(), strict=True
    ):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 16))
        np.testing.assert_array_equal(line.get_ydata(), reward)
        np.testing.assert_array_equal(other.get_ydata(), 100 * optimal)
    assert top.get_ylabel() == "Average reward" and bottom.get_ylabel() == "% Optimal action"
    assert "5 runs" in top.get_title()
    assert png_size(fig) == (990, 880)


def test_bandit_testbed_is_seeded_and_ranks_the_agents():
    from softmaxkit import _bandit

    first = _bandit.run_testbed(runs=200, steps=150, temperatures=(0.1, 5.0), seed=1)
    again = _bandit.run_testbed(runs=200, steps=150, temperatures=(0.1, 5.0), seed=1)
    for label in first:
        np.testing.assert_array_equal(first[label][0], again[label][0])
    # An agent at T = 5 barely prefers the arms it found good; at T = 0.1 it exploits them.
    late = {label: reward[-30:].mean() for label, (reward, _) in first.items()}
    assert late["softmax T=0.1"] > late["softmax T=5"] + 0.3
    # The average reward of uniform play is the mean of q*, about 0: T = 5 is close to it.
    assert abs(first["softmax T=5"][0][:10].mean()) < 0.3
