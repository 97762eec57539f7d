"""The command ``bandit``: the 10-armed testbed."""

from __future__ import annotations

import sys

from ._arguments import (
    _ExtendEach,
    _fraction,
    _integer,
    _temperatures,
    figure_output_arguments,
)
from ._core import PLOT_FORMATS, ComputationError, command
from ._output import check_output_path, save_figure


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
    figure_output_arguments(
        parser,
        required=False,
        help="also plot reward and %% optimal action per step to FILE (.png, .svg, .pdf), "
        "whole or not at all",
        dpi=110,
    )


@command(
    "bandit",
    help="the 10-armed testbed: softmax action selection at several temperatures vs ε-greedy",
    arguments=(_bandit_arguments,),
)
def run_bandit(args) -> None:
    from .. import _bandit

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
        save_figure(figure, args.output, extension, args.dpi, force=args.force)
    sys.stdout.write(f"{args.runs} runs x {args.steps} steps\n" + _bandit.summary(results))
    return None
