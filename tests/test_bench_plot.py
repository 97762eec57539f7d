"""benchmarks/plot_results.py: the benchmark tables parsed and drawn as bar charts.

The parser and the figure belong to the benchmarks, not to the installed package;
the plotted widths are the numbers written in the tables.
"""

from __future__ import annotations

import math
import os
import sys

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
)
import plot_results  # noqa: E402
from test_plot import legend_texts, png_size  # noqa: E402

import softmaxkit  # noqa: E402

MARKDOWN = """\
# Benchmarks

## softmax, float64

| library | rows | time (µs) | memory (MB) |
|:---|---:|---:|---:|
| softmaxkit | 1000 | 12.5 | 1.0 |
| scipy | 1000 | 30.1 µs | 2.0 |
| torch | 1000 | 1,500 | — |

Some text.

| case | ratio |
|---|---|
| a | 2 |
| b | 3 |
"""


def test_bench_from_markdown(tmp_path):
    for source in (MARKDOWN, tmp_path / "results.md", str(tmp_path / "results.md")):
        (tmp_path / "results.md").write_text(MARKDOWN)
        fig = plot_results.bench(source)
        first, second = fig.axes
        assert first.get_title() == "softmax, float64"
        widths = [patch.get_width() for patch in first.patches]
        assert widths[:3] == [12.5, 30.1, 1500.0]
        assert widths[3:5] == [1.0, 2.0] and math.isnan(widths[5])
        assert legend_texts(first) == ["time (µs)", "memory (MB)"]
        assert [t.get_text() for t in first.get_yticklabels()] == [
            "softmaxkit · 1000",
            "scipy · 1000",
            "torch · 1000",
        ]
        assert first.get_xscale() == "log"
        assert [patch.get_width() for patch in second.patches] == [2.0, 3.0]
        assert second.get_xlabel() == "ratio"
        assert png_size(fig)[0] == 800


def test_bench_from_dict_and_rows():
    fig = plot_results.bench({"softmaxkit": 1.0, "scipy": 3.0})
    assert [p.get_width() for p in fig.axes[0].patches] == [1.0, 3.0]
    fig = plot_results.bench(
        [
            {"library": "softmaxkit", "time (s)": 1.0, "speed (GB/s)": 8.0},
            {"library": "numpy", "time (s)": 2.0, "speed (GB/s)": 4.0},
        ]
    )
    axes = fig.axes[0]
    assert legend_texts(axes) == ["time (s)", "speed (GB/s)"]
    assert [p.get_width() for p in axes.patches] == [1.0, 2.0, 8.0, 4.0]
    assert png_size(plot_results.bench({"a": 1.0}, figsize=(4, 3), dpi=50)) == (200, 150)


def test_bench_without_numbers():
    with pytest.raises(ValueError, match="no table"):
        plot_results.bench("no table here")
    with pytest.raises(TypeError, match="markdown"):
        plot_results.bench(42)


def test_the_installed_package_has_no_benchmark_figure():
    assert not hasattr(softmaxkit.plot, "bench")
    assert not hasattr(softmaxkit.plot, "parse_markdown_tables")
    assert "bench" not in softmaxkit.plot.KINDS


def test_the_script_writes_the_figure(tmp_path):
    (tmp_path / "results.md").write_text(MARKDOWN)
    target = tmp_path / "tables.png"
    assert plot_results.main([str(tmp_path / "results.md"), "-o", str(target), "--dpi", "50"]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["results.md", "tables.png"]
