"""The tables drawn on a terminal (``rich``, imported only to draw one)."""

from __future__ import annotations

import math

import numpy as np

from ._core import BAR_WIDTH, TABLE_ROWS
from ._output import _format_number

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(probability: float, width: int = BAR_WIDTH) -> str:
    """A bar of ``width * probability`` characters, drawn in eighths of a character."""
    if not math.isfinite(probability) or probability <= 0:
        return ""
    eighths = round(min(probability, 1.0) * width * 8)
    return "█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()


def _rows_along(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``array`` as (rows, entries): the normalized axes jointly along each row."""
    array = np.asarray(array)
    if array.ndim == 0:
        return array.reshape(1, 1)
    moved = np.moveaxis(array, axes, tuple(range(array.ndim - len(axes), array.ndim)))
    length = math.prod(array.shape[a] for a in axes)
    return moved.reshape(-1, length)


def _temperature_label(temperature: float, several: bool) -> str:
    return f" T={temperature:g}" if several or temperature != 1.0 else ""


def _entries_table(inputs, results, temperatures, axes, title: str, log: bool):
    """Tables of the inputs, the results and a probability bar: one per row and temperature."""

    def draw(precision: int):
        from rich.table import Table

        input_rows = _rows_along(inputs, axes)
        several_rows = input_rows.shape[0] > 1
        several_temperatures = len(temperatures) > 1
        tables = []
        for row in range(min(input_rows.shape[0], TABLE_ROWS)):
            for temperature, result in zip(temperatures, results, strict=True):
                result_rows = _rows_along(result, axes)
                caption = [f"row {row}"] if several_rows else []
                if several_temperatures or temperature != 1.0:
                    caption.append(f"T = {temperature:g}")
                table = Table(title=", ".join(caption) or None, title_justify="left")
                table.add_column("#", justify="right", style="dim", no_wrap=True)
                table.add_column("x", justify="right", no_wrap=True)
                table.add_column(title, justify="right", no_wrap=True)
                table.add_column("", no_wrap=True, min_width=BAR_WIDTH, style="cyan")
                for entry in range(input_rows.shape[1]):
                    value = float(result_rows[row, entry])
                    table.add_row(
                        str(entry),
                        _format_number(input_rows[row, entry], precision),
                        _format_number(value, precision),
                        bar(math.exp(value) if log else value),
                    )
                tables.append(table)
        return tables + _rows_left_out(input_rows.shape[0])

    return draw


def _rows_left_out(count: int, shown: int = TABLE_ROWS) -> list[str]:
    if count <= shown:
        return []
    return [f"... {count - shown} more rows (--format plain or -o FILE gives them all)"]


def _reduced_table(results, temperatures, title: str):
    def draw(precision: int):
        from rich.table import Table

        several = len(temperatures) > 1
        table = Table()
        table.add_column("row", justify="right", style="dim")
        for temperature in temperatures:
            table.add_column(title + _temperature_label(temperature, several), justify="right")
        flat = [np.ravel(r) for r in results]
        for row in range(min(flat[0].size, TABLE_ROWS * 10)):
            table.add_row(str(row), *(_format_number(f[row], precision) for f in flat))
        return [table, *_rows_left_out(flat[0].size, TABLE_ROWS * 10)]

    return draw
