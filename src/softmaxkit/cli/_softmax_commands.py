"""The commands ``softmax`` (the default) and ``logsumexp``."""

from __future__ import annotations

from ._arguments import axis_argument, input_arguments, output_arguments, temperature_argument
from ._core import DEFAULT_COMMAND, Output, _compute, _stack, command
from ._input import _check_axis, _stream_large_file, load_input
from ._tables import _entries_table, _reduced_table


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
    from .._softmax import log_softmax, softmax

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
    from .._logsumexp import logsumexp

    x = load_input(args)
    _check_axis(args.axis, x.ndim)
    temperatures = args.temperature or [1.0]
    results = [_compute(logsumexp, x, axis=args.axis, temperature=t) for t in temperatures]
    table = _reduced_table(results, temperatures, "logsumexp")
    return Output(_stack(results), table, one_per_line=True)
