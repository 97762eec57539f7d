"""Writing the results: text formats for standard output, files written whole or not at all."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable

import numpy as np

from ._core import FILE_FORMATS, TABLE_PRECISION, ComputationError, Output, UsageError


def _format_number(value, precision: int | None) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if precision is None:
        return repr(value)
    return f"{value:.{precision}g}"


def _as_rows(values: np.ndarray) -> np.ndarray:
    """Values as a 2-D array of lines: the last axis along each line."""
    values = np.asarray(values)
    if values.ndim == 0:
        return values.reshape(1, 1)
    return values.reshape(-1, values.shape[-1]) if values.shape[-1] else values.reshape(1, 0)


def render_text(output: Output, fmt: str, precision: int | None) -> str:
    """``output`` as plain text (space separated), CSV or JSON, ending in a newline."""
    values = output.values
    if fmt == "json":
        if np.asarray(values).dtype.kind in "iu":
            return json.dumps(np.asarray(values).tolist()) + "\n"
        rounded = values if precision is None else _round_significant(values, precision)
        return _json_text(np.asarray(rounded, dtype=np.float64).tolist()) + "\n"
    separator = "," if fmt == "csv" else " "
    return "".join(
        separator.join(_format_number(v, precision) for v in row) + "\n"
        for row in _as_rows(output.lines)
    )


def _json_text(data) -> str:
    """Nested lists of floats as JSON, which has no NaN and no infinity (RFC 8259).

    NaN is written ``null``; +-inf as ``1e999`` and ``-1e999``: valid JSON numbers
    that JSON readers (Python's ``json``, JavaScript's ``JSON.parse``) read back as
    +-infinity, where ``null`` would lose the sign and the difference from NaN.
    """
    if isinstance(data, list):
        return "[" + ", ".join(_json_text(item) for item in data) + "]"
    if math.isnan(data):
        return "null"
    if math.isinf(data):
        return "1e999" if data > 0 else "-1e999"
    return repr(float(data))


def _round_significant(values, precision: int):
    flat = [float(_format_number(v, precision)) for v in np.ravel(values)]
    return np.asarray(flat, dtype=np.float64).reshape(np.shape(values))


def write_atomically(path: str, write: Callable, *, force: bool = False) -> None:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then rename it.

    The rename is atomic: ``path`` is either left as it was or replaced whole, even
    if ``write`` fails half way (the temporary file is removed; an ``OSError`` names
    ``path``). The file is synced before the rename and keeps the mode of the file it
    replaces; see :mod:`softmaxkit._files` for symbolic links, hard links and
    read-only files (refused unless ``force``).
    """
    from .._files import AtomicFile

    extension = os.path.splitext(path)[1]
    with AtomicFile(
        path,
        force=force,
        prefix=".softmax-",
        suffix=extension,
        label=None,
        force_option="--force",
    ) as output:
        with output.open() as file:
            write(file)
        output.commit()


def save_figure(figure, path: str, extension: str, dpi: int, *, force: bool = False) -> None:
    """Write a matplotlib figure to ``path`` (its format from ``extension``), whole or not
    at all."""
    write_atomically(
        path, lambda file: figure.savefig(file, format=extension[1:], dpi=dpi), force=force
    )


def check_output_path(path: str, formats, *, force: bool = False) -> str:
    """The extension of ``path`` if it is one of ``formats`` and ``path`` may be written.

    Checked before any work: the folder exists and can be written to, ``path`` is
    not a folder, a FIFO or a device, and without ``force`` not read-only and
    without other hard links.
    """
    from .._files import destination

    extension = os.path.splitext(path)[1].lower()
    if extension not in formats:
        raise UsageError(
            "-o/--output",
            f"unknown output format {extension or path!r} (use {', '.join(formats)})",
        )
    try:
        destination(path, force=force, label=None, force_option="--force")
    except OSError as error:
        raise UsageError("-o/--output", error.strerror or str(error)) from None
    return extension


class _BlockWriter:
    """A file that ``np.save`` writes in blocks, as to any file-like object.

    Given a real file, ``np.save`` calls ``ndarray.tofile``, whose error on a full
    disk ("200000 requested and 130032 written") carries no errno; ``write`` raises
    the system's error (ENOSPC, EFBIG).
    """

    def __init__(self, file):
        self.write = file.write


def write_output(path: str, output: Output, precision: int | None, *, force=False) -> None:
    fmt = FILE_FORMATS[os.path.splitext(path)[1].lower()]
    if fmt == "npy":
        write_atomically(
            path,
            lambda file: np.save(_BlockWriter(file), output.values, allow_pickle=False),
            force=force,
        )
    else:
        text = render_text(output, fmt, precision)
        write_atomically(path, lambda file: file.write(text.encode("utf-8")), force=force)


def print_output(output: Output, args) -> None:
    if sys.stdout is None:
        raise ComputationError("standard output is closed: -o FILE writes the result to a file")
    precision = getattr(args, "precision", None)
    fmt = args.format
    if fmt is None:
        fmt = "table" if sys.stdout.isatty() and output.table is not None else "plain"
    if fmt == "table" and output.table is not None:
        try:
            from rich.console import Console
        except ImportError:
            fmt = "plain"
        else:
            console = Console()
            for renderable in output.table(precision or TABLE_PRECISION):
                console.print(renderable)
            return
    if fmt == "table":
        fmt = "plain"
    sys.stdout.write(render_text(output, fmt, precision))
