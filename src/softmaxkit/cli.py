"""The ``softmax`` command.

``softmax 1 3 2`` prints the probabilities; ``logsumexp``, ``sample``,
``sparsemax``, ``entmax``, ``plot KIND -o FILE`` and ``bandit`` are subcommands
(``softmax --help`` lists them; ``softmax --version`` prints the version). Every
command is one function registered with :func:`command`; it names the argument
groups it takes and returns an :class:`Output` (or writes its own file and
returns None). Reading the input, checking it, rendering it as a table, plain
text, JSON or CSV, and writing a file whole or not at all are shared by all
commands.

Errors of usage (an unparsable number, an unknown format or command, a missing
file or folder, a file that is not what its extension says, rows of different
lengths, a NaN or negative temperature, an option out of range such as
``--top-p 1.5``, an output file that is read-only without ``--force``) print one
line ``softmax: error: ...`` naming the argument and exit with status 2; a
computation or a write that fails (out of memory, a full disk, a closed standard
output) prints one such line and exits with status 1. That includes input the
library refuses once it looks at the numbers: ``softmax sample`` on a row with no
allowed entry (all ``-inf``, or NaN), or ``-n`` larger than a row's allowed
entries with ``--no-replace``, exits 1 with the library's message naming the row.
SIGINT, SIGTERM and SIGHUP remove the temporary file of an output being written
and exit with status 128 + the signal's number.
Nothing is imported beyond NumPy and the library until it is needed: ``rich``
only to draw a table, matplotlib only to plot.

A new subcommand is one registered function (integer results, such as drawn
indices, print as integers; ``run_sample`` below is the full example)::

    def _argmax_arguments(parser):
        parser.add_argument("--top", type=int, default=1)

    @command("argmax", help="indices of the largest scores",
             arguments=(input_arguments, _argmax_arguments, output_arguments))
    def run_argmax(args):
        x = load_input(args)
        return Output(_compute(np.argsort, -x)[..., : args.top])

Examples
--------
>>> from softmaxkit.cli import main
>>> main(["1", "3", "2", "--format", "plain", "--precision", "4"])
0.09003 0.6652 0.2447
0
>>> main(["logsumexp", "1", "3", "2", "--format", "plain"])
3.40760596444438
0
>>> main(["sample", "1", "3", "2", "-n", "5", "--seed", "0"])
1 1 0 0 2
0
>>> main(["sparsemax", "1", "3", "2.5", "--format", "plain"])
0.0 0.75 0.25
0
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import inspect
import json
import math
import os
import re
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["main", "command", "Output", "UsageError", "ComputationError"]

PROG = "softmax"
TEXT_FORMATS = ("table", "plain", "json", "csv")
FILE_FORMATS = {".npy": "npy", ".csv": "csv", ".txt": "plain", ".json": "json"}
INPUT_FORMATS = (".npy", ".csv", ".txt", ".json")
PLOT_FORMATS = (".png", ".svg", ".pdf")
# Above this size a .npy input written to a .npy output goes through the streaming
# path (softmaxkit.softmax_file, in blocks, with a progress bar) instead of being
# read whole into memory.
LARGE_INPUT_BYTES = 256 * 2**20
BAR_WIDTH = 20
TABLE_PRECISION = 6
# A terminal table shows this many rows (one table each); the other formats show all.
TABLE_ROWS = 20


class UsageError(Exception):
    """Bad usage: one line naming the argument, exit status 2."""

    def __init__(self, argument: str | None, message: str):
        self.argument = argument
        super().__init__(f"argument {argument}: {message}" if argument else message)


class ComputationError(Exception):
    """A computation that failed on valid input, or a missing extra: exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) raised as :class:`UsageError`."""

    def error(self, message):
        raise UsageError(None, message)


# --- the registry of commands -------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command: its name, one-line help, argument groups and the function that runs it."""

    name: str
    help: str
    arguments: tuple[Callable[[argparse.ArgumentParser], None], ...]
    run: Callable[[argparse.Namespace], Output | None]


COMMANDS: dict[str, Command] = {}
DEFAULT_COMMAND = "softmax"


def command(name: str, *, help: str, arguments: Sequence[Callable] = ()):
    """Register the decorated ``run(args) -> Output | None`` as the command ``name``.

    ``arguments`` are functions that add argument groups to the command's parser
    (:func:`input_arguments`, :func:`axis_argument`, :func:`temperature_argument`,
    :func:`output_arguments`, or the command's own).
    """

    def register(run):
        COMMANDS[name] = Command(name, help, tuple(arguments), run)
        return run

    return register


@dataclass
class Output:
    """What a command computed, for every output format.

    ``values`` is the array written to ``-o`` files and printed in the plain,
    JSON and CSV formats; ``table`` draws it for a terminal (a function of the
    precision that returns ``rich`` renderables). A reduction (one value per
    row) sets ``one_per_line`` so that plain text and CSV keep one row per line.
    """

    values: np.ndarray
    table: Callable[[int], list] | None = None
    one_per_line: bool = False

    @property
    def lines(self) -> np.ndarray:
        """The values as the text formats lay them out: one row per line."""
        return np.asarray(self.values)[..., None] if self.one_per_line else self.values


# --- argument groups ------------------------------------------------------------------------


def input_arguments(parser):
    parser.add_argument(
        "values",
        nargs="*",
        metavar="VALUE",
        help="scores (logits), space or comma separated; without them, rows are read "
        "from -i FILE or from standard input (one row per line)",
    )
    parser.add_argument(
        "-i",
        "--input",
        metavar="FILE",
        help="read the scores from FILE (.npy, .csv, .txt, .json); '-' is standard input",
    )


def axis_argument(parser):
    parser.add_argument(
        "-a",
        "--axis",
        type=_axis,
        default=-1,
        metavar="AXIS",
        help="axis to normalise over: an int, several ints joined by commas, or 'all' "
        "(default -1, the entries of each row)",
    )


def temperature_argument(parser):
    parser.add_argument(
        "-t",
        "--temperature",
        type=_temperatures,
        nargs="+",
        action=_ExtendEach,
        metavar="T",
        help="divide the scores by T >= 0 (0 is greedy, inf uniform); several values "
        "(spaces or commas) give one result each; they take every number after -t, so "
        "put the scores first",
    )


def output_arguments(parser, *, precision: bool = True):
    parser.add_argument(
        "-f",
        "--format",
        choices=TEXT_FORMATS,
        help="format of standard output (default: table on a terminal, plain otherwise; "
        "json writes NaN as null and infinities as 1e999)",
    )
    if precision:
        parser.add_argument(
            "-p",
            "--precision",
            type=_precision,
            metavar="DIGITS",
            help="significant digits of the printed numbers (default: every digit, "
            f"{TABLE_PRECISION} in a table); .npy files are always exact",
        )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the result to FILE instead (.npy, .csv, .txt, .json, from the "
        "extension), whole or not at all",
    )
    force_argument(parser)


def integer_output_arguments(parser):
    """The output options of a command whose results are integers: no precision."""
    output_arguments(parser, precision=False)


def force_argument(parser):
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an output file even if it is read-only or has other hard links "
        "(an existing file keeps its mode; a symbolic link is written through)",
    )


# --- argument types: each error names the problem; argparse adds the argument --------------

_NUMBER_SPLIT = re.compile(r"[,\s]+")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"could not parse {text.strip()!r} as a number") from None


class _ExtendEach(argparse.Action):
    """Append the values of every token (each a list) to the option's list."""

    def __call__(self, parser, namespace, values, option_string=None):
        collected = list(getattr(namespace, self.dest) or [])
        for token_values in values:
            collected.extend(token_values)
        setattr(namespace, self.dest, collected)


def _temperatures(text: str) -> list[float]:
    values = []
    for part in _NUMBER_SPLIT.split(text.strip().strip(",")):
        try:
            value = _number(part)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if math.isnan(value) or value < 0:
            raise argparse.ArgumentTypeError(f"temperature must be >= 0, got {value!r}")
        values.append(value)
    return values


def _axis(text: str):
    text = text.strip()
    if text.lower() in ("all", "none"):
        return None
    try:
        parts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"axis must be an int, ints joined by commas, or 'all', got {text!r}"
        ) from None
    return parts[0] if len(parts) == 1 else parts


def _precision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"precision must be an int >= 1, got {text.strip()!r}")
    return value


def _looks_like_number(token: str) -> bool:
    try:
        for part in _NUMBER_SPLIT.split(token.strip(",")):
            float(part)
    except ValueError:
        return False
    return True


def _protect_negative_numbers(argv: list[str]) -> list[str]:
    """Keep ``-1e5``, ``-inf`` or ``-1,2`` from being read as options.

    argparse only recognises plain negative numbers (``-3``, ``-0.5``) as values;
    a leading space takes any other numeric token out of option parsing, and
    ``float`` ignores it.
    """
    protected = []
    for token in argv:
        if token == "--":
            protected.extend(argv[len(protected) :])
            break
        if token.startswith("-") and len(token) > 1 and _looks_like_number(token):
            token = " " + token
        protected.append(token)
    return protected


# --- input ----------------------------------------------------------------------------------


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
    from ._files import npy_header

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
        from ._files import file_kind

        raise UsageError(
            argument,
            f"{path!r} is a {file_kind(mode)}, not a regular file (-i - reads standard input)",
        )


def _stream_large_file(args) -> bool:
    """Normalise a large ``-i X.npy -o Y.npy`` in blocks; whether it was done here.

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
    from .streaming import softmax_file

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
        raise ComputationError(f"out of memory normalising {source}") from None
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
    from ._lib._validation import normalize_axis

    try:
        return normalize_axis(axis, ndim)
    except (ValueError, TypeError) as error:
        raise UsageError("-a/--axis", str(error)) from None


# --- output ---------------------------------------------------------------------------------


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
    from ._files import AtomicFile

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


def check_output_path(path: str, formats, *, force: bool = False) -> str:
    """The extension of ``path`` if it is one of ``formats`` and ``path`` may be written.

    Checked before any work: the folder exists and can be written to, ``path`` is
    not a folder, a FIFO or a device, and without ``force`` not read-only and
    without other hard links.
    """
    from ._files import destination

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


# --- tables ---------------------------------------------------------------------------------

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(probability: float, width: int = BAR_WIDTH) -> str:
    """A bar of ``width * probability`` characters, drawn in eighths of a character."""
    if not math.isfinite(probability) or probability <= 0:
        return ""
    eighths = round(min(probability, 1.0) * width * 8)
    return "█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()


def _rows_along(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``array`` as (rows, entries): the normalised axes jointly along each row."""
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


# --- the commands ---------------------------------------------------------------------------


def _stack(results: list[np.ndarray]) -> np.ndarray:
    return results[0] if len(results) == 1 else np.stack(results)


def _compute(function, x, **options):
    try:
        return np.asarray(function(x, **options))
    except MemoryError:
        raise ComputationError("computation failed: out of memory") from None
    except Exception as error:
        raise ComputationError(f"computation failed: {type(error).__name__}: {error}") from error


def _log_argument(parser):
    parser.add_argument(
        "-l", "--log", action="store_true", help="log-probabilities (log_softmax) instead"
    )


@command(
    DEFAULT_COMMAND,
    help="probabilities of the scores (the default command)",
    arguments=(
        input_arguments,
        axis_argument,
        temperature_argument,
        _log_argument,
        output_arguments,
    ),
)
def run_softmax(args) -> Output | None:
    from ._softmax import log_softmax, softmax

    if _stream_large_file(args):
        return None
    x = load_input(args)
    axes = _check_axis(args.axis, x.ndim)
    temperatures = args.temperature or [1.0]
    function = log_softmax if args.log else softmax
    results = [_compute(function, x, axis=args.axis, temperature=t) for t in temperatures]
    title = "log p" if args.log else "p"
    return Output(_stack(results), _entries_table(x, results, temperatures, axes, title, args.log))


@command(
    "logsumexp",
    help="log of the sum of the exponentials of each row",
    arguments=(input_arguments, axis_argument, temperature_argument, output_arguments),
)
def run_logsumexp(args) -> Output:
    from ._logsumexp import logsumexp

    x = load_input(args)
    _check_axis(args.axis, x.ndim)
    temperatures = args.temperature or [1.0]
    results = [_compute(logsumexp, x, axis=args.axis, temperature=t) for t in temperatures]
    table = _reduced_table(results, temperatures, "logsumexp")
    return Output(_stack(results), table, one_per_line=True)


def _plot_arguments(parser):
    from . import plot

    parser.add_argument("kind", choices=sorted(plot.KINDS), help="which figure")
    input_arguments(parser)
    temperature_argument(parser)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the image to write (.png, .svg, .pdf), whole or not at all",
    )
    force_argument(parser)
    parser.add_argument(
        "--dpi", type=_precision, default=100, help="resolution of a .png (default 100)"
    )


@command(
    "plot",
    help="draw a figure into a .png, .svg or .pdf file",
    arguments=(_plot_arguments,),
)
def run_plot(args) -> None:
    from . import plot

    extension = check_output_path(args.output, PLOT_FORMATS, force=args.force)
    function = plot.KINDS[args.kind]
    parameters = inspect.signature(function).parameters
    positional, options = [], {}
    if "results" in parameters:
        if args.values:
            raise UsageError(
                "VALUE", f"plot {args.kind} takes a results file (-i FILE), not values"
            )
        if args.input is None or not os.path.isfile(args.input):
            raise UsageError(
                "-i/--input",
                f"plot {args.kind} needs a results file (markdown tables), got {args.input!r}",
            )
        positional.append(args.input)
    elif args.values or args.input is not None:
        if "x" not in parameters:
            raise UsageError("VALUE", f"plot {args.kind} takes no scores")
        positional.append(load_input(args))
    if args.temperature:
        if "temperatures" in parameters:
            options["temperatures"] = tuple(args.temperature)
        elif "temperature" in parameters and len(args.temperature) == 1:
            options["temperature"] = args.temperature[0]
        elif "temperature" in parameters:
            raise UsageError("-t/--temperature", f"plot {args.kind} takes one temperature")
        else:
            raise UsageError("-t/--temperature", f"plot {args.kind} takes no temperature")
    try:
        figure = function(*positional, **options)
    except ImportError as error:
        raise ComputationError(str(error)) from None
    except (ValueError, TypeError) as error:
        raise UsageError("VALUE", str(error)) from None
    write_atomically(
        args.output,
        lambda file: figure.savefig(file, format=extension[1:], dpi=args.dpi),
        force=args.force,
    )
    return None


# --- sampling -------------------------------------------------------------------------------


def _integer(name: str, minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be an int >= {minimum}, got {text.strip()!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an int >= {minimum}, got {value}")
        return value

    return parse


def _fraction(name: str, *, allow_zero: bool):
    interval = "[0, 1]" if allow_zero else "(0, 1]"

    def parse(text: str) -> float:
        try:
            value = _number(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not ((value >= 0 if allow_zero else value > 0) and value <= 1):
            raise argparse.ArgumentTypeError(f"{name} must be in {interval}, got {value!r}")
        return value

    return parse


def _one_temperature(text: str) -> float:
    values = _temperatures(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"takes one temperature, got {text.strip()!r}")
    return values[0]


def _sample_arguments(parser):
    parser.add_argument(
        "-t",
        "--temperature",
        type=_one_temperature,
        default=1.0,
        metavar="T",
        help="divide the scores by T >= 0 before drawing (0 is greedy, inf uniform)",
    )
    parser.add_argument(
        "-k", "--top-k", type=_integer("top-k", 1), metavar="K", help="keep the K largest scores"
    )
    parser.add_argument(
        "--top-p",
        type=_fraction("top-p", allow_zero=False),
        metavar="P",
        help="keep the most likely entries up to a mass of P in (0, 1] (nucleus sampling)",
    )
    parser.add_argument(
        "--min-p",
        type=_fraction("min-p", allow_zero=True),
        metavar="P",
        help="keep the entries with probability >= P times the largest, P in [0, 1]",
    )
    parser.add_argument(
        "--typical-p",
        type=_fraction("typical-p", allow_zero=False),
        metavar="P",
        help="keep the entries whose surprisal is closest to the row's entropy, up to a "
        "mass of P in (0, 1] (locally typical sampling)",
    )
    parser.add_argument(
        "-n",
        "--num-samples",
        type=_integer("num-samples", 0),
        metavar="N",
        help="draws per row, printed on the row's line (default: one draw per row)",
    )
    parser.add_argument(
        "--replace",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw with replacement (default); --no-replace draws distinct indices",
    )
    parser.add_argument(
        "-s", "--seed", type=_integer("seed", 0), metavar="SEED", help="seed of the draws"
    )


@command(
    "sample",
    help="draw indices from softmax(x / T) after top-k, top-p, min-p and typical-p",
    arguments=(input_arguments, _sample_arguments, integer_output_arguments),
)
def run_sample(args) -> Output:
    """Draw indices; a row with nothing left to draw from is a failed computation (exit 1).

    The library's ``ValueError`` for such a row (all ``-inf``, NaN, or fewer allowed
    entries than ``-n`` with ``--no-replace``) names the row; the options themselves
    are checked while parsing (exit 2).
    """
    from .sampling import sample

    x = load_input(args)
    indices = _compute(
        sample,
        x,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        typical_p=args.typical_p,
        num_samples=args.num_samples,
        replace=args.replace,
        rng=args.seed,
    )
    return Output(indices, one_per_line=args.num_samples is None)


# --- sparse alternatives --------------------------------------------------------------------


def _alpha(text: str) -> float:
    try:
        value = _number(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not (value >= 1 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"alpha must be finite and >= 1 (1 is softmax, 2 sparsemax), got {value!r}"
        )
    return value


def _alpha_argument(parser):
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=1.5,
        metavar="ALPHA",
        help="1 is softmax, 1.5 (default) entmax-1.5, 2 sparsemax (1.5 and 2 exact, "
        "others by bisection)",
    )


def _sparse_command(args, function, title: str, **options) -> Output:
    x = load_input(args)
    axes = _check_axis(args.axis, x.ndim)
    temperatures = args.temperature or [1.0]
    results = [
        _compute(function, x, axis=args.axis, temperature=t, **options) for t in temperatures
    ]
    return Output(_stack(results), _entries_table(x, results, temperatures, axes, title, False))


@command(
    "sparsemax",
    help="sparsemax of the scores: probabilities with exact zeros",
    arguments=(input_arguments, axis_argument, temperature_argument, output_arguments),
)
def run_sparsemax(args) -> Output:
    from .sparse import sparsemax

    return _sparse_command(args, sparsemax, "sparsemax")


@command(
    "entmax",
    help="alpha-entmax of the scores (--alpha 1.5 by default)",
    arguments=(
        input_arguments,
        axis_argument,
        temperature_argument,
        _alpha_argument,
        output_arguments,
    ),
)
def run_entmax(args) -> Output:
    from .sparse import entmax, entmax15, sparsemax

    # The exact sort-based maps where they exist, rather than bisection.
    if args.alpha == 1.5:
        return _sparse_command(args, entmax15, "entmax-1.5")
    if args.alpha == 2:
        return _sparse_command(args, sparsemax, "entmax-2 (sparsemax)")
    return _sparse_command(args, entmax, f"entmax-{args.alpha:g}", alpha=args.alpha)


# --- bandit ---------------------------------------------------------------------------------


def _bandit_arguments(parser):
    parser.add_argument(
        "--runs", type=_integer("runs", 1), default=2000, help="bandits per agent (default 2000)"
    )
    parser.add_argument(
        "--steps", type=_integer("steps", 1), default=1000, help="steps per run (default 1000)"
    )
    parser.add_argument(
        "-t",
        "--temperature",
        type=_temperatures,
        nargs="+",
        action=_ExtendEach,
        metavar="T",
        help="temperatures of the softmax agents (default 0.01 0.1 0.5 1 2 5)",
    )
    parser.add_argument(
        "--epsilon",
        type=_fraction("epsilon", allow_zero=True),
        default=0.1,
        help="exploration rate of the ε-greedy baseline (default 0.1)",
    )
    parser.add_argument(
        "-s", "--seed", type=_integer("seed", 0), default=0, help="seed (default 0)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also plot reward and %% optimal action per step to FILE (.png, .svg, .pdf), "
        "whole or not at all",
    )
    force_argument(parser)
    parser.add_argument(
        "--dpi", type=_precision, default=110, help="resolution of a .png (default 110)"
    )


@command(
    "bandit",
    help="the 10-armed testbed: softmax action selection at several temperatures vs ε-greedy",
    arguments=(_bandit_arguments,),
)
def run_bandit(args) -> None:
    from . import _bandit

    extension = None
    if args.output is not None:
        extension = check_output_path(args.output, PLOT_FORMATS, force=args.force)
    temperatures = tuple(args.temperature or _bandit.TEMPERATURES)
    results = _bandit.run_testbed(
        runs=args.runs,
        steps=args.steps,
        temperatures=temperatures,
        epsilon=args.epsilon,
        seed=args.seed,
    )
    if extension is not None:
        try:
            figure = _bandit.figure(results, runs=args.runs)
        except ImportError as error:
            raise ComputationError(str(error)) from None
        write_atomically(
            args.output,
            lambda file: figure.savefig(file, format=extension[1:], dpi=args.dpi),
            force=args.force,
        )
    sys.stdout.write(f"{args.runs} runs x {args.steps} steps\n" + _bandit.summary(results))
    return None


# --- calibration: softmaxkit/_cli_calibrate.py -------------------------------------------------

from ._cli_calibrate import HELP as _CALIBRATE_HELP  # noqa: E402
from ._cli_calibrate import calibrate_arguments, run_calibrate  # noqa: E402

command("calibrate", help=_CALIBRATE_HELP, arguments=(calibrate_arguments,))(run_calibrate)


# --- entry point ----------------------------------------------------------------------------


def build_parser(name: str = DEFAULT_COMMAND) -> argparse.ArgumentParser:
    """The parser of the command ``name``."""
    spec = COMMANDS[name]
    if name == DEFAULT_COMMAND:
        from . import __version__

        others = "\n".join(
            f"  {PROG} {c.name:<10} {c.help}" for c in COMMANDS.values() if c.name != name
        )
        parser = _Parser(
            prog=PROG,
            description="Softmax of scores (logits): softmax 1 3 2",
            epilog=f"subcommands (softmax COMMAND --help):\n{others}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--version", action="version", version=f"softmaxkit {__version__}")
    else:
        parser = _Parser(prog=f"{PROG} {name}", description=spec.help)
    for add_arguments in spec.arguments:
        add_arguments(parser)
    return parser


_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _run(argv: list[str]) -> int:
    if argv and argv[0] not in COMMANDS and _COMMAND_NAME.fullmatch(argv[0]):
        if not _looks_like_number(argv[0]):
            names = ", ".join(c for c in COMMANDS if c != DEFAULT_COMMAND)
            raise UsageError(
                "COMMAND", f"unknown command {argv[0]!r} (choose from {names}, or give scores)"
            )
    name = argv[0] if argv and argv[0] in COMMANDS else DEFAULT_COMMAND
    if argv and argv[0] == name:
        argv = argv[1:]
    spec = COMMANDS[name]
    parser = build_parser(name)
    args = parser.parse_args(_protect_negative_numbers(argv))
    force = getattr(args, "force", False)
    if getattr(args, "output", None) is not None and name not in ("plot", "bandit"):
        check_output_path(args.output, tuple(FILE_FORMATS), force=force)
        if args.format is not None:
            raise UsageError(
                "-f/--format",
                "applies to standard output; -o/--output takes the format from the "
                f"file's extension ({', '.join(FILE_FORMATS)})",
            )
    prints = name == "bandit" or (name != "plot" and getattr(args, "output", None) is None)
    if prints and sys.stdout is None:
        # Known before any work: the result would have nowhere to go (`softmax 1 2 >&-`).
        hint = "" if name == "bandit" else ": -o FILE writes the result to a file"
        raise ComputationError(f"standard output is closed{hint}")
    output = spec.run(args)
    if output is None:
        return 0
    if getattr(args, "output", None) is not None:
        write_output(args.output, output, getattr(args, "precision", None), force=force)
    else:
        print_output(output, args)
        # Written now, so that a reader that went away is an error here, not at exit.
        sys.stdout.flush()
    return 0


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the program is so that ``finally`` blocks run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    # A second signal must not interrupt the cleanup of the first.
    for number in _TERMINATION_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    raise _Terminated(signum)


_TERMINATION_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def _cleanup_on_termination():
    """Turn SIGTERM and SIGHUP into :class:`_Terminated` while the command runs.

    By default they end the process at once, leaving the temporary file of an
    output being written; as an exception they unwind through the code that
    removes it, as SIGINT (KeyboardInterrupt) does. A signal that is ignored (``nohup``
    ignores SIGHUP) or handled by the embedding program is left alone, and so is
    everything outside the main thread, where no handler can be set.
    """
    previous = {}
    try:
        for number in _TERMINATION_SIGNALS:
            if signal.getsignal(number) == signal.SIG_DFL:
                previous[number] = signal.signal(number, _terminate)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _error(message: str) -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError):
            print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``softmax`` command on ``argv`` (default ``sys.argv[1:]``); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with _cleanup_on_termination():
            return _run(argv)
    except UsageError as error:
        _error(str(error))
        return 2
    except ComputationError as error:
        _error(str(error))
        return 1
    except MemoryError:
        _error("out of memory")
        return 1
    except BrokenPipeError:
        # The reader went away (`softmax ... | head`). What is still buffered goes to
        # the null device, so that the interpreter's last flush fails no more.
        with contextlib.suppress(OSError, AttributeError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        _error("standard output: Broken pipe")
        return 1
    except OSError as error:
        _error(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except _Terminated as terminated:
        return 128 + terminated.signum
    except SystemExit as exit:
        # argparse exits after --help and --version.
        return exit.code if isinstance(exit.code, int) else 0
