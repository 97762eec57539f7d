"""The command ``plot KIND -o FILE``: the figures of :mod:`softmaxkit.plot`."""

from __future__ import annotations

import inspect

from ._arguments import (
    figure_output_arguments,
    input_arguments,
    temperature_argument,
)
from ._core import PLOT_FORMATS, ComputationError, UsageError, command
from ._input import load_input
from ._output import check_output_path, save_figure


def _plot_arguments(parser):
    from .. import plot

    parser.add_argument("kind", choices=sorted(plot.KINDS), help="which figure")
    input_arguments(parser)
    temperature_argument(parser)
    figure_output_arguments(
        parser,
        required=True,
        help="the image to write (.png, .svg, .pdf), whole or not at all",
        dpi=100,
    )


@command(
    "plot",
    help="draw a figure into a .png, .svg or .pdf file",
    arguments=(_plot_arguments,),
)
def run_plot(args) -> None:
    from .. import plot

    extension = check_output_path(args.output, PLOT_FORMATS, force=args.force)
    function = plot.KINDS[args.kind]
    parameters = inspect.signature(function).parameters
    positional, options = [], {}
    if args.values or args.input is not None:
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
    save_figure(figure, args.output, extension, args.dpi, force=args.force)
    return None
