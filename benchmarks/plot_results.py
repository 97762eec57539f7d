"""The benchmark results (``benchmarks/results*.md``) as bar charts: a Markdown-table parser.

Not part of the installed package: the tables are the benchmarks' own output. Run as a
script, ``python benchmarks/plot_results.py [RESULTS.md] -o FIGURE.png`` (by default
``benchmarks/results.md`` into ``benchmarks/results_tables.png``); :func:`bench` returns
the matplotlib :class:`~matplotlib.figure.Figure`, built without ``pyplot``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HERE = os.path.dirname(os.path.abspath(__file__))

# Columns that hold measurements; when a table has some, its other numeric columns
# (sizes, counts) label the bars instead of being drawn.
_MEASUREMENT = re.compile(
    r"time|speed|throughput|ratio|memory|error|ulp|ns\b|µs|us\b|ms\b|\(s\)|/s\b|[KMG]i?B\b",
    re.I,
)
_LEADING_NUMBER = re.compile(r"^\s*[-+]?(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _figure(figsize, dpi):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _cell_number(cell: str) -> float | None:
    match = _LEADING_NUMBER.match(cell.replace("*", ""))
    if match is None:
        return None
    return float(match.group(0).replace(",", "").replace("_", ""))


def parse_markdown_tables(text: str) -> list[dict]:
    """The tables of a markdown text, each as ``{"title", "header", "rows"}``.

    ``title`` is the nearest heading above the table (or None).
    """
    tables, title, lines = [], None, text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if line.startswith("#"):
            title = line.lstrip("#").strip() or None
        is_table = (
            line.startswith("|")
            and index + 1 < len(lines)
            and re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", lines[index + 1].strip())
        )
        if not is_table:
            index += 1
            continue
        header = [cell.strip() for cell in line.strip("|").split("|")]
        rows = []
        index += 2
        while index < len(lines) and lines[index].strip().startswith("|"):
            rows.append([cell.strip() for cell in lines[index].strip().strip("|").split("|")])
            index += 1
        tables.append({"title": title, "header": header, "rows": rows})
    return tables


def _series_of(table: dict):
    """``(labels, {column: values})`` of a parsed table: its numeric columns as series."""
    header, rows = table["header"], [r for r in table["rows"] if r]
    numeric, label_columns = {}, []
    for column, name in enumerate(header):
        cells = [row[column] if column < len(row) else "" for row in rows]
        values = [_cell_number(cell) for cell in cells]
        if (
            column > 0
            and all(
                v is not None or cell in ("", "-", "—", "n/a")
                for v, cell in zip(values, cells, strict=True)
            )
            and any(v is not None for v in values)
        ):
            numeric[name] = [math.nan if v is None else v for v in values]
        else:
            label_columns.append(column)
    measured = [name for name in numeric if _MEASUREMENT.search(name)]
    if measured:
        unmeasured = [header.index(name) for name in numeric if name not in measured]
        label_columns = sorted(label_columns + unmeasured)
        numeric = {name: numeric[name] for name in measured}
    labels = [" · ".join(row[c] for c in label_columns if c < len(row)) for row in rows]
    return labels, numeric


def _tables_of(results) -> list[dict]:
    """Benchmark results in any accepted form, as parsed tables."""
    if isinstance(results, os.PathLike) or (
        isinstance(results, str) and "|" not in results and os.path.isfile(results)
    ):
        with open(results, encoding="utf-8") as file:
            results = file.read()
    if isinstance(results, str):
        return parse_markdown_tables(results)
    if isinstance(results, dict):
        header, rows = ["case"], []
        for label, value in results.items():
            if isinstance(value, dict):
                for key in value:
                    if key not in header:
                        header.append(key)
                rows.append((label, value))
            else:
                if "value" not in header:
                    header.append("value")
                rows.append((label, {"value": value}))
        body = [[str(label)] + [str(v.get(k, "")) for k in header[1:]] for label, v in rows]
        return [{"title": None, "header": header, "rows": body}]
    rows = list(results) if isinstance(results, (list, tuple)) else []
    if rows and all(isinstance(row, dict) for row in rows):
        header = list(dict.fromkeys(key for row in rows for key in row))
        body = [[str(row.get(k, "")) for k in header] for row in rows]
        return [{"title": None, "header": header, "rows": body}]
    raise TypeError(
        "results must be markdown text, a path to a markdown file, a dict or a list of dicts"
    )


def bench(
    results: (
        str | os.PathLike[str] | dict[Any, Any] | list[dict[str, Any]] | tuple[dict[str, Any], ...]
    ),
    /,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """The benchmark results as horizontal bar charts, one per table.

    Parameters
    ----------
    results : str, path, dict or list of dict
        Markdown text with tables (such as ``benchmarks/results.md``) or a path to
        it; a dict ``{label: value}`` or ``{label: {column: value}}``; or a list of
        rows as dicts (the columns that are not numbers label the bars). In each
        table, the columns whose cells are numbers (units after them are allowed)
        are the series.
    figsize, dpi
        Size of the figure in inches (by default from the number of bars) and its
        resolution.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per table with numbers, titled by the heading above it; a log
        scale when the values span more than a factor of 100.

    Examples
    --------
    >>> fig = bench({"softmaxkit": {"time (µs)": 12.0}, "scipy": {"time (µs)": 30.0}})
    >>> [float(bar.get_width()) for bar in fig.axes[0].patches]
    [12.0, 30.0]
    """
    charts = [(t["title"], *_series_of(t)) for t in _tables_of(results)]
    charts = [c for c in charts if c[2] and c[1]]
    if not charts:
        raise ValueError("results hold no table with a column of numbers")
    if figsize is None:
        heights = [len(labels) * max(1, len(series)) for _, labels, series in charts]
        figsize = (8, min(40.0, 1.0 + sum(0.28 * h + 0.9 for h in heights)))
    fig = _figure(figsize, dpi)
    heights = [len(labels) * max(1, len(series)) + 2 for _, labels, series in charts]
    axes_list = fig.subplots(len(charts), 1, squeeze=False, height_ratios=heights)[:, 0]
    for axes, (title, labels, series) in zip(axes_list, charts, strict=True):
        positions = np.arange(len(labels))
        height = 0.8 / len(series)
        for k, (name, values) in enumerate(series.items()):
            offset = (k - (len(series) - 1) / 2) * height
            axes.barh(positions + offset, values, height, label=name)
        axes.set_yticks(positions, labels)
        axes.invert_yaxis()
        finite = np.asarray([v for vs in series.values() for v in vs if v > 0 and math.isfinite(v)])
        if finite.size and finite.max() > 100 * finite.min():
            axes.set_xscale("log")
        if title:
            axes.set_title(title)
        if len(series) > 1:
            axes.legend()
        else:
            axes.set_xlabel(next(iter(series)))
    return fig


def main(argv=None) -> int:
    """Draw the tables of a results file into an image."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=os.path.join(HERE, "results.md"))
    parser.add_argument("-o", "--output", default=os.path.join(HERE, "results_tables.png"))
    parser.add_argument("--dpi", type=float, default=100)
    options = parser.parse_args(argv)
    figure = bench(options.results, dpi=options.dpi)
    root, extension = os.path.splitext(options.output)
    temporary = root + ".tmp" + extension
    figure.savefig(temporary)
    os.replace(temporary, options.output)
    print(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
