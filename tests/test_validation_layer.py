"""The one validation layer: argument errors are raised by ``_lib/_validation.py`` (with
the dtype rules of ``_dtypes.py`` and the library rules of ``_namespace.py``) or by the
checks module of a concept, before any work is dispatched.

The scan below reads every module of the package and fails on a ``raise ValueError``
or ``raise TypeError`` outside the allow-list; the behaviour tests check that the
moved checks still raise first, naming the argument and the value, and that the
command line says what the library says.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit.cli import main

PACKAGE = Path(smk.__file__).resolve().parent

# Where a ValueError or TypeError may be raised: a whole module ("path"), or one
# function or method of a module ("path::name", "path::Class.method"). Each entry
# says why its errors are not the validation layer's.
ALLOWED = {
    # The layer itself.
    "_lib/_validation.py": "the validation layer: axes, array arguments, out=",
    "_lib/_scalar_checks.py": "the validation layer's scalar checks (re-exported there)",
    "_lib/_dtypes.py": "the layer's dtype rules",
    "_lib/_namespace.py": "the layer's rules on mixing and supported array libraries",
    # The checks modules of a concept: relations between a concept's arguments.
    "losses/_checks.py": "losses: targets vs logits, class weights, the binary operands",
    "sparse/_checks.py": "the Fenchel-Young losses: targets and class weights vs x",
    "calibration/_inputs.py": "calibration: scores, labels, weights, bounds, fitted shapes",
    "sampling/_options.py": "sampling: the filter order and the filters it must name",
    "attention.py::_check_inputs": "attention: the shapes of q, k and v together",
    "attention.py::_check_mask": "attention: the mask's shape vs the scores",
    "attention.py::_broadcast_batch": "attention: the batch shapes of q, k, v and mask",
    "_lib/_random.py::Randomness.__init__": "the rng, whose valid kinds depend on the library",
    "plot.py::_vector": "the figures: the vector of scores a figure draws",
    "calibration/_plot.py::reliability_diagram": "the figure's titles and axes",
    "sklearn.py": "the estimator: X vs y, the classes seen in fit (scikit-learn's rules)",
    # The contents of files, the values in the data, runtime state.
    "_files.py": "the contents of .npy files (their headers)",
    "streaming/_file_softmax.py::_open_source": "the contents of the source file (Zarr)",
    "streaming/_file_softmax.py::softmax_file": "what the source file holds (0-d, dtype)",
    "streaming/_state.py": "the state of a LogSumExpState (chunks seen, states merged)",
    "sampling/_rows.py::_Setup.check_rows": "the logits' values: NaN or no allowed entry",
    "sampling/_draw.py::sample": "the logits' values: fewer allowed entries than draws",
    "calibration/_temperature.py::TemperatureProblem.__init__": "the fit: a -inf label",
    "calibration/_temperature.py::solve_temperature": "the fit: every row constant",
    "_threads.py::_default": "the environment variable SOFTMAXKIT_NUM_THREADS",
    "cli/_arguments.py::_number": "the command line's text, parsed as a number",
}


def _raises(tree):
    """``(qualified name of the enclosing function, line)`` of each raise of ValueError
    or TypeError in ``tree`` (the name is '' at module level)."""
    found = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + (child.name,))
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                name = getattr(exc, "id", getattr(exc, "attr", None))
                if name in ("ValueError", "TypeError"):
                    found.append((".".join(scope), child.lineno))
            visit(child, scope)

    visit(tree, ())
    return found


def _all_raises():
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for function, line in _raises(ast.parse(path.read_text(encoding="utf-8"))):
            yield module, function, line


def _allowed(module, function):
    if module in ALLOWED:
        return True
    # A nested function counts as part of the function it is defined in.
    parts = function.split(".")
    return any(f"{module}::{'.'.join(parts[:n])}" in ALLOWED for n in range(1, len(parts) + 1))


def test_the_scan_finds_raises():
    # The scan itself: the layer raises many errors, and a nested raise is found.
    layer = ("_lib/_validation.py", "_lib/_scalar_checks.py")
    assert sum(1 for module, _, _ in _all_raises() if module in layer) >= 20
    tree = ast.parse("def f():\n    def g():\n        raise TypeError('x')\n")
    assert _raises(tree) == [("f.g", 3)]


def test_argument_errors_come_from_the_validation_layer():
    outside = [
        f"{module}:{line} ({function or 'module level'})"
        for module, function, line in _all_raises()
        if not _allowed(module, function)
    ]
    assert not outside, (
        "raise ValueError/TypeError outside the validation layer; use a check of "
        "softmaxkit/_lib/_validation.py (or the concept's checks module):\n" + "\n".join(outside)
    )


def test_every_allow_list_entry_is_used():
    used = set()
    for module, function, _ in _all_raises():
        if module in ALLOWED:
            used.add(module)
        parts = function.split(".")
        used.update(f"{module}::{'.'.join(parts[:n])}" for n in range(1, len(parts) + 1))
    assert sorted(set(ALLOWED) - used) == []
    assert all(reason.strip() for reason in ALLOWED.values())


# --- the moved checks still raise first, naming the argument and the value -----------


def _exactly(message):
    return "^" + re.escape(message) + "$"


def test_set_num_threads():
    previous = smk.get_num_threads()
    with pytest.raises(ValueError, match=_exactly("n must be >= 1 and <= 256, got 0")):
        smk.set_num_threads(0)
    with pytest.raises(TypeError, match=_exactly("n must be an int, got True")):
        smk.set_num_threads(True)
    assert smk.get_num_threads() == previous


def test_policy_schedules():
    from softmaxkit.policy import SoftmaxPolicy, exponential, linear

    with pytest.raises(ValueError, match=_exactly("steps must be >= 1, got 0")):
        linear(end=0.1, steps=0)
    with pytest.raises(TypeError, match=_exactly("steps must be an int, got 2.0")):
        linear(end=0.1, steps=2.0)
    with pytest.raises(ValueError, match=_exactly("decay must be in (0, 1], got 1.5")):
        exponential(decay=1.5)
    with pytest.raises(ValueError, match=_exactly("temperature must be >= 0, got -1.0")):
        SoftmaxPolicy(temperature=-1.0)


def test_softmax_file_checks_before_opening_any_file(tmp_path):
    missing, dst = tmp_path / "missing.npy", tmp_path / "out.npy"
    for options, error, message in [
        ({"chunk_bytes": 0}, ValueError, "chunk_bytes must be > 0, got 0"),
        ({"kind": "exp"}, ValueError, "kind must be one of 'softmax', 'log_softmax', got 'exp'"),
        ({"temperature": -1.0}, ValueError, "temperature must be >= 0, got -1.0"),
        ({"axis": 1.0}, TypeError, "axis must be an int, got 1.0"),
    ]:
        # The source does not exist: the argument is refused before it is looked for.
        with pytest.raises(error, match=_exactly(message)):
            smk.softmax_file(missing, dst, progress=False, **options)
    assert os.listdir(tmp_path) == []


def test_sample_checks_before_drawing(monkeypatch):
    import softmaxkit.sampling._draw as draw

    def no_work(*args, **kwargs):
        raise AssertionError("work was dispatched before the arguments were checked")

    monkeypatch.setattr(draw, "_Setup", no_work)
    logits = np.array([1.0, 2.0, 3.0])
    for options, error, message in [
        (
            {"method": "alias"},
            ValueError,
            "method must be one of 'inverse_cdf', 'gumbel', got 'alias'",
        ),
        ({"replace": "no"}, TypeError, "replace must be True or False, got 'no'"),
        ({"num_samples": -1}, ValueError, "num_samples must be >= 0, got -1"),
    ]:
        with pytest.raises(error, match=_exactly(message)):
            smk.sample(logits, rng=0, **options)


def test_linear_cross_entropy_checks_before_any_block(monkeypatch):
    import softmaxkit._linear_cross_entropy as head

    def no_work(*args, **kwargs):
        raise AssertionError("work was dispatched before the arguments were checked")

    monkeypatch.setattr(head, "compiled_backend", no_work)
    monkeypatch.setattr(head, "_row_losses", no_work)
    hidden, weight, target = np.ones((3, 2)), np.ones((4, 2)), np.array([0, 1, 2])
    for options, error, message in [
        ({"chunk_size": 0}, ValueError, "chunk_size must be > 0, got 0"),
        (
            {"reduction": "avg"},
            ValueError,
            "reduction must be one of 'mean', 'sum', 'none', got 'avg'",
        ),
        ({"label_smoothing": 1.5}, ValueError, "label_smoothing must be in [0, 1], got 1.5"),
        ({"z_loss": -1.0}, ValueError, "z_loss must be >= 0.0, got -1.0"),
        ({"softcap": 0.0}, ValueError, "softcap must be > 0.0, got 0.0"),
    ]:
        with pytest.raises(error, match=_exactly(message)):
            smk.linear_cross_entropy(hidden, weight, target, **options)


def test_attention_and_gradients():
    q = np.ones((2, 3))
    with pytest.raises(ValueError, match=_exactly("block_size must be > 0, got 0")):
        smk.attention(q, q, q, block_size=0)
    with pytest.raises(ValueError, match=_exactly("scale must not be NaN")):
        smk.attention(q, q, q, scale=float("nan"))
    message = "q must have at least two dimensions (..., length, features), got shape (3,)"
    with pytest.raises(ValueError, match=_exactly(message)):
        smk.attention(q[0], q, q)
    with pytest.raises(TypeError, match=_exactly("axis must be an int, got (0, 1)")):
        smk.softmax_jacobian(q, axis=(0, 1))


def test_calibration_uses_the_layer_checks():
    logits, labels = np.array([[1.0, 2.0], [0.0, 1.0], [2.0, 0.0]]), [0, 1, 0]
    with pytest.raises(ValueError, match=_exactly("l2_off_diagonal must be >= 0, got -1.0")):
        smk.fit_matrix_scaling(logits, labels, l2_off_diagonal=-1.0)
    with pytest.raises(TypeError, match=_exactly("ignore_index must be an int, got 1.5")):
        smk.fit_temperature(logits, labels, ignore_index=1.5)
    with pytest.raises(
        ValueError, match=_exactly("strategy must be one of 'uniform', 'quantile', got 'equal'")
    ):
        smk.expected_calibration_error(logits, labels, strategy="equal")


# --- the command line says what the library says ------------------------------------


def _library_message(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize(
    "argv, call, names",
    [
        (
            ["sample", "1", "2", "--top-p", "2"],
            lambda: smk.sample(np.array([1.0, 2.0]), top_p=2, rng=0),
            ("top_p", "top-p"),
        ),
        (
            ["sample", "1", "2", "-n", "-1"],
            lambda: smk.sample(np.array([1.0, 2.0]), num_samples=-1, rng=0),
            ("num_samples", "num-samples"),
        ),
        (
            ["1", "2", "-t", "-1"],
            lambda: smk.softmax(np.array([1.0, 2.0]), temperature=-1),
            ("temperature", "temperature"),
        ),
    ],
)
def test_the_command_line_says_what_the_library_says(capsys, argv, call, names):
    # The same check words both; the command line names the option as it is spelled.
    library_name, option_name = names
    message = _library_message(call)
    assert message.startswith(library_name + " must be ")
    message = option_name + message[len(library_name) :]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("softmax: error: argument ")
    assert line.endswith(": " + message), (line, message)
