"""The command ``sample``: indices drawn after temperature and the filters."""

from __future__ import annotations

import argparse

from ._arguments import (
    _fraction,
    _integer,
    _temperatures,
    input_arguments,
    integer_output_arguments,
)
from ._core import Output, _compute, command
from ._input import load_input


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
        "-k",
        "--top-k",
        type=_integer("top-k", 0),
        metavar="K",
        help="keep the K largest scores (0: no top-k filter, as in Hugging Face)",
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
    from ..sampling import sample

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
