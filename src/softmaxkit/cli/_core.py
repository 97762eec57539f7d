"""The frame of every command: the registry (:func:`command`), what a command returns
(:class:`Output`), the two kinds of error and their exit statuses, the formats."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PROG = "softmax"
TEXT_FORMATS = ("table", "plain", "json", "csv")
FILE_FORMATS = {".npy": "npy", ".csv": "csv", ".txt": "plain", ".json": "json"}
INPUT_FORMATS = (".npy", ".csv", ".txt", ".json")
PLOT_FORMATS = (".png", ".svg", ".pdf")


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


def _stack(results: list[np.ndarray]) -> np.ndarray:
    return results[0] if len(results) == 1 else np.stack(results)


def _compute(function, x, **options):
    try:
        return np.asarray(function(x, **options))
    except MemoryError:
        raise ComputationError("computation failed: out of memory") from None
    except Exception as error:
        raise ComputationError(f"computation failed: {type(error).__name__}: {error}") from error
