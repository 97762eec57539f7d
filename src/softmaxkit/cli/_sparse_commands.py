"""The commands ``sparsemax`` and ``entmax``."""

from __future__ import annotations

from ._arguments import (
    _alpha,
    axis_argument,
    input_arguments,
    output_arguments,
    temperature_argument,
)
from ._core import Output, _compute, _stack, command
from ._input import _check_axis, load_input
from ._tables import _entries_table


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
    from ..sparse import sparsemax

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
    from ..sparse import entmax, entmax15, sparsemax

    # The exact sort-based maps where they exist, rather than bisection.
    if args.alpha == 1.5:
        return _sparse_command(args, entmax15, "entmax-1.5")
    if args.alpha == 2:
        return _sparse_command(args, sparsemax, "entmax-2 (sparsemax)")
    return _sparse_command(args, entmax, f"entmax-{args.alpha:g}", alpha=args.alpha)
