"""Reading the scores: from the arguments, ``-i FILE`` (.npy, .csv, .txt, .json) or
standard input, each error naming the argument; a large ``.npy`` to ``.npy`` streams."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
import sys

import numpy as np

from ._arguments import _NUMBER_SPLIT, _looks_like_number, _number
from ._core import INPUT_FORMATS, PROG, ComputationError, UsageError

# Above this size a .npy input written to a .npy output goes through the streaming
# path (softmaxkit.softmax_file, in blocks, with a progress bar) instead of being
# read whole into memory.
LARGE_INPUT_BYTES = 256 * 2**20


def _warn(message: str) -> None:
    if sys.stderr is not None:
        print(f"{PROG}: warning: {message}", file=sys.stderr)


def _spells_infinity(field: str) -> bool:
    return field.strip().lstrip("+-").lower() in ("inf", "infinity")


# Separators people put between numbers that are not the accepted ones.
_OTHER_SEPARATORS = (";", "|", ":", "\t", " ")


def _separator_hint(text: str, separators: str) -> str:
    """Why ``text`` did not parse, if it is numbers joined by another separator."""
    for separator in _OTHER_SEPARATORS:
        parts = [part.strip() for part in text.split(separator)]
        if len(parts) > 1 and all(part and _looks_like_number(part) for part in parts):
            return f" (values are separated by {separators}, not {separator!r})"
    return ""


class _Rows:
    """Rows of numbers collected line by line, with the checks every text source shares.

    A field that is beyond the float64 range (``1e999``) is read as an infinity, as
    IEEE rounding gives, and one warning line says so; ``inf`` itself is read silently.
    """

    def __init__(self, source: str, argument: str | None, separators: str):
        self.source, self.argument, self.separators = source, argument, separators
        self.rows: list[list[float]] = []
        self.first_line = None
        self.overflows: list[tuple[int, str]] = []

    def _where(self, line_number: int) -> str:
        return "" if self.source == "the arguments" else f"{self.source} line {line_number}: "

    def add(self, line_number: int, fields: list[str]) -> None:
        row = []
        for position, field in enumerate(fields, start=1):
            if not field.strip():
                raise UsageError(
                    self.argument, f"{self._where(line_number)}field {position} is empty"
                )
            try:
                value = _number(field)
            except ValueError as error:
                hint = _separator_hint(field, self.separators)
                raise UsageError(
                    self.argument, f"{self._where(line_number)}{error}{hint}"
                ) from None
            if math.isinf(value) and not _spells_infinity(field):
                self.overflows.append((line_number, field.strip()))
            row.append(value)
        if self.rows and len(row) != len(self.rows[0]):
            raise UsageError(
                self.argument,
                f"{self.source} line {line_number} has {len(row)} values, but line "
                f"{self.first_line} has {len(self.rows[0])} (rows must have the same length)",
            )
        if not self.rows:
            self.first_line = line_number
        self.rows.append(row)

    def array(self, header: str | None = None) -> np.ndarray:
        if not self.rows:
            message = f"{self.source} holds no numbers"
            if header is not None:
                message += (
                    f": its only line, {header!r}, was taken as a header"
                    f"{_separator_hint(header, self.separators) or ''}"
                )
            raise UsageError(self.argument, message)
        if self.overflows:
            line_number, field = self.overflows[0]
            sign = "-" if field.startswith("-") else ""
            more = len(self.overflows) - 1
            _warn(
                f"{self._where(line_number)}{field} is beyond the float64 range: read as "
                f"{sign}inf"
                + (f" (and {more} more such value{'s' if more > 1 else ''})" if more else "")
            )
        array = np.asarray(self.rows, dtype=np.float64)
        return array[0] if len(self.rows) == 1 else array


def parse_rows(text: str, *, source: str, argument: str | None, skip_header: bool = False):
    """Rows of numbers, separated by commas and/or whitespace, one row per line.

    Blank lines and lines starting with ``#`` are skipped; with ``skip_header``, a
    first line in which no field is a number (a header) is skipped too. One row
    gives a 1-D array, several a 2-D array; rows of different lengths are an error.
    """
    rows = _Rows(source, argument, "commas or whitespace")
    header = None
    for line_number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip().strip(",")
        if not stripped or stripped.startswith("#"):
            continue
        fields = _NUMBER_SPLIT.split(stripped)
        if skip_header and not rows.rows and header is None:
            if not any(_looks_like_number(f) for f in fields):
                header = stripped
                continue
        rows.add(line_number, fields)
    return rows.array(header)


def parse_csv(text: str, *, source: str, argument: str | None):
    """Rows of a CSV file: fields separated by commas, quoted or not (the csv module).

    As :func:`parse_rows`: blank lines, ``#`` lines, a first line with no number (a
    header) and empty fields at the ends of a line (a trailing comma) are skipped.
    """
    rows = _Rows(source, argument, "commas")
    header = None
    reader = csv.reader(text.splitlines(), skipinitialspace=True)
    try:
        for fields in reader:
            fields = [field.strip() for field in fields]
            while fields and not fields[-1]:
                fields.pop()
            while fields and not fields[0]:
                fields.pop(0)
            if not fields or fields[0].startswith("#"):
                continue
            if not rows.rows and header is None:
                if not any(_looks_like_number(f) for f in fields):
                    header = ",".join(fields)
                    continue
            rows.add(reader.line_num, fields)
    except csv.Error as error:
        raise UsageError(argument, f"{source} line {reader.line_num}: {error}") from None
    return rows.array(header)


def _read_text(path: str, argument: str) -> str:
    try:
        # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the data.
        with open(path, encoding="utf-8-sig") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise UsageError(
            argument, f"{path} is not UTF-8 text: {error.reason} at byte {error.start}"
        ) from None


def _read_json(path: str, argument: str):
    """A JSON number or nested lists; ``null`` reads as NaN and ``1e999`` as infinity
    (JSON has neither), which is how ``-f json`` writes them."""
    text = _read_text(path, argument)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(argument, f"{path} is not valid JSON: {error}") from None
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        raise UsageError(
            argument,
            f"{path} must hold a number or nested lists of numbers with rows of the same length",
        ) from None
    return array


def _read_npy(path: str, argument: str):
    from .._files import npy_header

    try:
        _, _, dtype = npy_header(path, label=None)
    except ValueError as error:
        raise UsageError(argument, str(error)) from None
    if dtype.kind not in "biuf" and dtype.name != "bfloat16":
        raise UsageError(argument, f"{path} holds {dtype} values; scores must be real")
    try:
        array = np.load(path, allow_pickle=False)
    except MemoryError:
        raise ComputationError(
            f"not enough memory to read {path} ({os.path.getsize(path)} bytes); "
            f"-o FILE.npy streams a .npy over {LARGE_INPUT_BYTES // 2**20} MiB in blocks"
        ) from None
    except ValueError as error:
        raise UsageError(argument, f"{path} is not a valid .npy file: {error}") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(argument, f"{path} must hold one array")
    return array


def _check_input_file(path: str, argument: str) -> None:
    """A regular file: a missing file, a folder or a FIFO (which would block) is refused."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(argument, f"no such file: {path!r}") from None
    except OSError as error:
        raise UsageError(argument, f"cannot read {path!r}: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(argument, f"{path!r} is a folder, not a file")
    if not stat.S_ISREG(mode):
        from .._files import file_kind

        raise UsageError(
            argument,
            f"{path!r} is a {file_kind(mode)}, not a regular file (-i - reads standard input)",
        )


def _stream_large_file(args) -> bool:
    """Normalize a large ``-i X.npy -o Y.npy`` in blocks; whether it was done here.

    Only one temperature and one integer axis stream; other large inputs are read
    whole, as small ones are.
    """
    source, target = args.input, getattr(args, "output", None)
    if not (source and target and not args.values):
        return False
    if not (source.lower().endswith(".npy") and target.lower().endswith(".npy")):
        return False
    if not os.path.isfile(source) or os.path.getsize(source) <= LARGE_INPUT_BYTES:
        return False
    temperatures = args.temperature or [1.0]
    try:
        axis = int(args.axis)
    except (TypeError, ValueError):
        return False
    if len(temperatures) != 1:
        return False
    from ..streaming import softmax_file

    kind = "log_softmax" if args.log else "softmax"
    try:
        softmax_file(
            source,
            target,
            axis=axis,
            kind=kind,
            temperature=temperatures[0],
            progress=sys.stderr is not None and sys.stderr.isatty(),
            force=args.force,
        )
    except (ValueError, TypeError) as error:
        raise UsageError("-i/--input", str(error)) from None
    except MemoryError:
        raise ComputationError(f"out of memory normalizing {source}") from None
    return True


def load_input(args) -> np.ndarray:
    """The scores of ``args``: from the arguments, ``-i FILE``, or standard input.

    Every source is read whole into memory (a large ``.npy`` written to a ``.npy``
    takes :func:`_stream_large_file` before this).
    """
    if args.values and args.input is not None:
        raise UsageError("-i/--input", "give the scores as arguments or in a file, not both")
    if args.values:
        return parse_rows(" ".join(args.values), source="the arguments", argument="VALUE")
    if args.input is None or args.input == "-":
        if args.input is None and sys.stdin is not None and sys.stdin.isatty():
            hint = ""
            if getattr(args, "temperature", None) and len(args.temperature) > 1:
                hint = " (-t took every number after it: put the scores before -t)"
            raise UsageError(
                "VALUE",
                "no scores: give them as arguments (softmax 1 3 2), with -i FILE, "
                f"or as rows on standard input{hint}",
            )
        try:
            text = sys.stdin.read() if sys.stdin is not None else ""
        except UnicodeDecodeError as error:
            raise UsageError(
                "-i/--input", f"standard input is not UTF-8 text: {error.reason}"
            ) from None
        return parse_rows(text, source="standard input", argument="-i/--input")
    path = args.input
    extension = os.path.splitext(path)[1].lower()
    if extension not in INPUT_FORMATS:
        raise UsageError(
            "-i/--input",
            f"unknown input format {extension or path!r} (use {', '.join(INPUT_FORMATS)})",
        )
    _check_input_file(path, "-i/--input")
    if extension == ".npy":
        return _read_npy(path, "-i/--input")
    if extension == ".json":
        return _read_json(path, "-i/--input")
    text = _read_text(path, "-i/--input")
    if extension == ".csv":
        return parse_csv(text, source=path, argument="-i/--input")
    return parse_rows(text, source=path, argument="-i/--input")


def _check_axis(axis, ndim: int):
    from .._lib._validation import normalize_axis

    try:
        return normalize_axis(axis, ndim)
    except (ValueError, TypeError) as error:
        raise UsageError("-a/--axis", str(error)) from None
