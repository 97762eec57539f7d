"""The entry point: the parser of each command, the run, the exit statuses and signals."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
from collections.abc import Sequence

from ._arguments import _looks_like_number, _protect_negative_numbers
from ._core import (
    COMMANDS,
    DEFAULT_COMMAND,
    FILE_FORMATS,
    PROG,
    ComputationError,
    UsageError,
    _Parser,
)
from ._output import check_output_path, print_output, write_output


def build_parser(name: str = DEFAULT_COMMAND) -> argparse.ArgumentParser:
    """The parser of the command ``name``."""
    spec = COMMANDS[name]
    if name == DEFAULT_COMMAND:
        from .. import __version__

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
