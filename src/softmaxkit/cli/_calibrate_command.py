"""``softmax calibrate``: fit a calibration to logits and labels, report it, write it out.

``softmax calibrate -i logits.npy --labels labels.npy [--method temperature|vector|matrix]
[-o calibrated.npy] [--plot reliability.png]`` prints the fitted temperature (or a
summary of the scaling's parameters) and the NLL, ECE and Brier score before and
after. ``-o`` writes the calibrated logits, ``--plot`` the reliability diagram;
each file is written whole or not at all. Registered by :mod:`softmaxkit.cli`,
whose readers, writers and errors it uses (exit status 2 for usage, 1 for a
computation that fails or a missing extra).

Examples
--------
>>> import os, tempfile, numpy as np
>>> from softmaxkit.cli import main
>>> folder = tempfile.mkdtemp()
>>> logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
>>> np.save(os.path.join(folder, "logits.npy"), logits)
>>> np.save(os.path.join(folder, "labels.npy"), np.array([0, 1, 2, 1]))
>>> main(["calibrate", "-i", os.path.join(folder, "logits.npy"),
...       "--labels", os.path.join(folder, "labels.npy")])  # doctest: +ELLIPSIS
method       temperature
temperature  2.23244...
...
0
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ._arguments import _integer, _real
from ._core import (
    FILE_FORMATS,
    INPUT_FORMATS,
    PLOT_FORMATS,
    PROG,
    ComputationError,
    Output,
    UsageError,
    command,
)
from ._input import _read_json, _read_npy, parse_rows
from ._output import save_figure, write_output

__all__ = ["HELP", "calibrate_arguments", "run_calibrate"]

HELP = "fit a temperature (or vector/matrix scaling) to logits and labels: NLL, ECE, Brier"
METHODS = ("temperature", "vector", "matrix")


def calibrate_arguments(parser):
    parser.add_argument(
        "-i",
        "--input",
        required=True,
        metavar="FILE",
        help="the logits: rows of class scores (.npy, .csv, .txt, .json)",
    )
    parser.add_argument(
        "--labels",
        required=True,
        metavar="FILE",
        help="one class index per row (.npy, .csv, .txt, .json; an integer .npy, or "
        "whole numbers), or rows of class probabilities the shape of the logits",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="temperature",
        help="temperature scaling (default; keeps every prediction), vector scaling "
        "(a scale and bias per class) or matrix scaling (W z + b)",
    )
    parser.add_argument(
        "-a",
        "--axis",
        type=int,
        default=-1,
        metavar="AXIS",
        help="the class axis of the logits (default -1)",
    )
    parser.add_argument(
        "--bins",
        type=_integer("bins", 1),
        default=15,
        help="bins of the ECE and of the diagram (default 15)",
    )
    parser.add_argument(
        "--l2",
        type=_real("l2", low=0),
        default=0.0,
        metavar="LAMBDA",
        help="matrix scaling: L2 penalty on the off-diagonal of W and on b (default 0)",
    )
    parser.add_argument(
        "-o",
        "--output",
        dest="calibrated",
        metavar="FILE",
        help="write the calibrated logits (.npy, .csv, .txt, .json), whole or not at all",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="draw the reliability diagram before and after (.png, .svg, .pdf), whole or "
        "not at all",
    )
    parser.add_argument(
        "--dpi",
        type=_integer("dpi", 1),
        default=110,
        help="resolution of a .png (default 110)",
    )


def _check_path(path, formats, argument):

    extension = os.path.splitext(path)[1].lower()
    if extension not in formats:
        raise UsageError(
            argument, f"unknown format {extension or path!r} (use {', '.join(formats)})"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(argument, f"no such folder: {os.path.dirname(path)!r}")
    if os.path.isdir(path):
        raise UsageError(argument, f"{path!r} is a folder")
    return extension


def _read(path, argument):

    extension = os.path.splitext(path)[1].lower()
    if extension not in INPUT_FORMATS:
        raise UsageError(
            argument,
            f"unknown input format {extension or path!r} (use {', '.join(INPUT_FORMATS)})",
        )
    if not os.path.isfile(path):
        raise UsageError(argument, f"no such file: {path!r}")
    if extension == ".npy":
        return _read_npy(path, argument)
    if extension == ".json":
        return _read_json(path, argument)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    return parse_rows(text, source=path, argument=argument, skip_header=extension == ".csv")


def _labels_for(labels, logits, axis):
    """Class indices as integers: text formats hold floats, so whole numbers of the
    batch shape are read as indices; anything else is passed on as probabilities."""

    if labels.dtype.kind in "iu":
        return labels
    class_axis = axis % logits.ndim
    batch_shape = logits.shape[:class_axis] + logits.shape[class_axis + 1 :]
    flat_batch = (
        labels.ndim == 2 and labels.shape[1] == 1 and labels.shape[0] == np.prod(batch_shape)
    )
    if labels.shape == batch_shape or flat_batch:
        if labels.dtype.kind == "b":
            raise UsageError("--labels", "labels must be class indices, got booleans")
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            bad = labels[~whole].ravel()[0].item()
            raise UsageError("--labels", f"class indices must be whole numbers, got {bad!r}")
        return labels.astype(np.int64).reshape(batch_shape)
    return labels


def _fit(method, logits, labels, axis, l2):
    from .. import calibration

    if method == "temperature":
        temperature = calibration.fit_temperature(logits, labels, axis=axis)
        return (lambda z: z / temperature), [("temperature", f"{temperature:.6g}")]
    if method == "vector":
        scaling = calibration.fit_vector_scaling(logits, labels, axis=axis)
        summary = [
            ("scale", _range(scaling.scale)),
            ("bias", _range(scaling.bias)),
        ]
    else:
        scaling = calibration.fit_matrix_scaling(
            logits, labels, axis=axis, l2_off_diagonal=l2, l2_bias=l2
        )
        diagonal = np.diag(scaling.weight)
        off = scaling.weight[~np.eye(diagonal.size, dtype=bool)]
        summary = [
            ("diagonal", _range(diagonal)),
            ("off-diagonal", f"largest |W_kj| {np.max(np.abs(off)):.4g}"),
            ("bias", _range(scaling.bias)),
        ]
    summary.append(("iterations", str(scaling.n_iter)))
    return scaling, summary


def _range(values):
    return f"{values.min():.4g} .. {values.max():.4g}"


def _scores(logits, labels, axis, bins):
    from .. import calibration

    options = {"from_logits": True, "axis": axis}
    return [
        calibration.negative_log_likelihood(logits, labels, **options),
        calibration.expected_calibration_error(logits, labels, n_bins=bins, **options),
        calibration.brier_score(logits, labels, **options),
    ]


def _report(method, summary, before, after):
    rows = [("method", method), *summary]
    width = max(len(name) for name, _ in rows + [("Brier", "")]) + 2
    lines = [f"{name:<{width}}{value}" for name, value in rows]
    lines.append(f"{'':<{width}}{'before':<12}after")
    for name, old, new in zip(("NLL", "ECE", "Brier"), before, after):
        lines.append(f"{name:<{width}}{old:<12.6g}{new:.6g}")
    return "\n".join(lines) + "\n"


def run_calibrate(args) -> None:
    import sys

    from ..calibration import CalibrationWarning

    output_extension = plot_extension = None
    if args.calibrated is not None:
        output_extension = _check_path(args.calibrated, tuple(FILE_FORMATS), "-o/--output")
    if args.plot is not None:
        plot_extension = _check_path(args.plot, PLOT_FORMATS, "--plot")
    logits = _read(args.input, "-i/--input")
    if logits.ndim == 0:
        raise UsageError("-i/--input", "the logits must be rows of class scores, got one number")
    if logits.ndim == 1:
        logits = logits[None, :]  # one row: one sample
    if not -logits.ndim <= args.axis < logits.ndim:
        raise UsageError(
            "-a/--axis", f"axis {args.axis} is out of range for logits of shape {logits.shape}"
        )
    labels = _labels_for(_read(args.labels, "--labels"), logits, args.axis)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ComputationError(
                'softmax calibrate --plot needs matplotlib: pip install "softmaxkit[plot]"'
            ) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        try:
            before = _scores(logits, labels, args.axis, args.bins)
            calibrate, summary = _fit(args.method, logits, labels, args.axis, args.l2)
            calibrated = np.asarray(calibrate(logits), dtype=np.float64)
            after = _scores(calibrated, labels, args.axis, args.bins)
        except ImportError as error:
            raise ComputationError(str(error)) from None
        except (ValueError, TypeError) as error:
            raise UsageError(None, str(error)) from None
    figure = None
    if plot_extension is not None:
        from ..calibration import reliability_diagram

        figure = reliability_diagram(
            logits,
            labels,
            from_logits=True,
            calibrated=calibrated,
            axis=args.axis,
            n_bins=args.bins,
            titles=("before calibration", f"after {args.method} scaling"),
        )
    if output_extension is not None:
        write_output(args.calibrated, Output(calibrated), None)
    if figure is not None:
        save_figure(figure, args.plot, plot_extension, args.dpi)
    for warning in caught:
        if issubclass(warning.category, CalibrationWarning):
            print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    sys.stdout.write(_report(args.method, summary, before, after))
    return None


command("calibrate", help=HELP, arguments=(calibrate_arguments,))(run_calibrate)
