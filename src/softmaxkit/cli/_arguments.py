"""The argument groups the commands share, and the argument types: each parses the text
and checks the value with ``_lib._validation`` (the library's message; argparse adds
the option's name)."""

from __future__ import annotations

import argparse
import re

from .._lib._validation import check_fraction, check_int, check_real, check_scalar_temperature
from ._core import TABLE_PRECISION, TEXT_FORMATS

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
        help="axis to normalize over: an int, several ints joined by commas, or 'all' "
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
            type=_integer("precision", 1),
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


def figure_output_arguments(parser, *, help: str, required: bool, dpi: int):
    """``-o FILE`` for a figure (.png, .svg, .pdf), ``--force`` and ``--dpi``."""
    parser.add_argument("-o", "--output", required=required, metavar="FILE", help=help)
    force_argument(parser)
    parser.add_argument(
        "--dpi", type=_integer("dpi", 1), default=dpi, help=f"resolution of a .png (default {dpi})"
    )


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


def _temperature(name: str, value: float) -> float:
    return check_scalar_temperature(value, name)


def _temperatures(text: str) -> list[float]:
    values = []
    for part in _NUMBER_SPLIT.split(text.strip().strip(",")):
        try:
            value = _number(part)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        values.append(_checked(_temperature, "temperature", value))
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


def _number_argument(text: str) -> float:
    try:
        return _number(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _checked(check, name: str, value, **bounds):
    """``check(name, value, **bounds)``, a check of ``_lib._validation``: the library's
    message for the command's argument (argparse names the option)."""
    try:
        return check(name, value, **bounds)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _integer(name: str, minimum: int):
    """An argument type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = text.strip()  # not an int: check_int says so
        return _checked(check_int, name, value, low=minimum)

    return parse


def _fraction(name: str, *, allow_zero: bool):
    """An argument type: a number in [0, 1] (``allow_zero``) or (0, 1]."""

    def parse(text: str) -> float:
        return _checked(check_fraction, name, _number_argument(text), allow_zero=allow_zero)

    return parse


def _real(name: str, *, low: float):
    """An argument type: a finite number >= ``low``."""

    def parse(text: str) -> float:
        return _checked(check_real, name, _number_argument(text), low=low, finite=True)

    return parse


# The alpha of entmax, checked as the library checks it.
_alpha = _real("alpha", low=1)
