"""The ``softmax`` command: every option, input format and error case.

Most tests call ``softmaxkit.cli.main(argv)`` in-process (fast); a few run the
command in a subprocess, as a user would (``python -m softmaxkit`` and the
``softmax`` console script where it is installed). Results are compared with the
classic examples' reference values (mpmath, in ``shared/reference``) or with the
formula computed in float64 another way.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import softmaxkit
from softmaxkit.cli import main


def _find_seeds():
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "reference" / "seed_examples.json"
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


SEEDS = _find_seeds()
needs_seeds = pytest.mark.skipif(SEEDS is None, reason="shared/reference/seed_examples.json absent")


def reference_softmax(x, axis=-1, temperature=1.0):
    """exp(x/T - max) / sum, in long double: an independent reference for plain inputs."""
    scaled = np.asarray(x, dtype=np.longdouble) / np.longdouble(temperature)
    shifted = np.exp(scaled - scaled.max(axis=axis, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=axis, keepdims=True), dtype=np.float64)


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def numbers(text):
    return np.asarray([[float(v) for v in line.split()] for line in text.splitlines()])


def assert_usage_error(status, out, err, *words):
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("softmax: error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


# --- computing and printing ----------------------------------------------------------------


@needs_seeds
@pytest.mark.parametrize(
    "name", ["three_scores", "wide_spread", "mixed_signs", "classic_scores", "two_classes"]
)
def test_classic_examples(capsys, name):
    seed = SEEDS["vectors"][name]
    argv = [str(v) for v in seed["input"]]
    status, out, err = run(capsys, *argv)
    assert (status, err) == (0, "")
    np.testing.assert_allclose(numbers(out)[0], seed["softmax"], rtol=2e-15, atol=0)
    status, out, _ = run(capsys, *argv, "--log")
    np.testing.assert_allclose(numbers(out)[0], seed["log_softmax"], rtol=2e-15)
    status, out, _ = run(capsys, "logsumexp", *argv)
    assert float(out) == pytest.approx(seed["logsumexp"], rel=2e-15)


@needs_seeds
def test_several_temperatures_give_one_row_each(capsys):
    sweep = SEEDS["temperature_sweep"]
    argv = [str(v) for v in sweep["input"]]
    status, out, _ = run(capsys, *argv, "-t", *map(str, sweep["temperatures"]))
    assert status == 0
    np.testing.assert_allclose(numbers(out), sweep["softmax"], rtol=4e-15, atol=1e-300)


@needs_seeds
def test_axis_on_a_batch_from_stdin(capsys, monkeypatch):
    batch = SEEDS["vectors"]["batch_2d"]
    text = "\n".join(" ".join(str(v) for v in row) for row in batch["input"])
    status, out, _ = run(capsys, "--axis", "0", stdin=text, monkeypatch=monkeypatch)
    assert status == 0
    expected = np.asarray([column["softmax"] for column in batch["axis_0"]]).T
    np.testing.assert_allclose(numbers(out), expected, rtol=2e-15)
    status, out, _ = run(capsys, "logsumexp", stdin=text, monkeypatch=monkeypatch)
    expected = [row["logsumexp"] for row in batch["axis_-1"]]
    np.testing.assert_allclose(numbers(out)[:, 0], expected, rtol=2e-15)


def test_axis_all_and_tuple(capsys, monkeypatch):
    text = "1 2\n3 4\n"
    status, out, _ = run(capsys, "--axis", "all", stdin=text, monkeypatch=monkeypatch)
    assert status == 0
    np.testing.assert_allclose(numbers(out), reference_softmax([[1, 2], [3, 4]], axis=None))
    status, out, _ = run(capsys, "-a", "0,1", stdin=text, monkeypatch=monkeypatch)
    np.testing.assert_allclose(numbers(out), reference_softmax([[1, 2], [3, 4]], axis=None))


def test_temperature_edges(capsys):
    status, out, _ = run(capsys, "1", "3", "3", "-t", "0", "inf")
    assert status == 0
    np.testing.assert_array_equal(numbers(out), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_negative_numbers_infinities_and_commas(capsys):
    status, out, _ = run(capsys, "-1e5", "-inf", "-0.5,2", "-t", "2")
    assert status == 0
    expected = reference_softmax([-1e5, -math.inf, -0.5, 2.0], temperature=2.0)
    np.testing.assert_allclose(numbers(out)[0], expected, rtol=2e-15)
    status, out, _ = run(capsys, "--", "-3", "4")
    np.testing.assert_allclose(numbers(out)[0], reference_softmax([-3, 4]), rtol=2e-15)


def test_precision_and_formats(capsys):
    status, out, _ = run(capsys, "1", "3", "2", "--precision", "3")
    assert out == "0.09 0.665 0.245\n"
    status, out, _ = run(capsys, "1", "3", "2", "-f", "csv", "-p", "4")
    assert out == "0.09003,0.6652,0.2447\n"
    status, out, _ = run(capsys, "1", "3", "2", "-f", "json")
    np.testing.assert_allclose(json.loads(out), reference_softmax([1, 3, 2]), rtol=2e-15)
    status, out, _ = run(capsys, "1", "3", "2", "-f", "json", "-p", "2")
    assert json.loads(out) == [0.09, 0.67, 0.24]
    status, out, _ = run(capsys, "1", "3", "2", "-f", "plain")
    assert len(out.splitlines()) == 1 and len(out.split()) == 3


def test_log_infinities_print_and_round_trip_through_json(capsys, tmp_path):
    status, out, _ = run(capsys, "0", "-inf", "--log", "-f", "json")
    assert json.loads(out) == [0.0, -math.inf]
    status, out, _ = run(capsys, "0", "-inf", "--log")
    assert out == "0.0 -inf\n"


def test_table_has_inputs_probabilities_and_bars(capsys):
    status, out, _ = run(capsys, "1", "3", "2", "--format", "table")
    assert status == 0
    lines = [line for line in out.splitlines() if "│" in line]
    assert len(lines) == 3
    assert "0.665241" in lines[1] and " 3 " in lines[1]
    # the bar of p = 0.665 is 13.3 of 20 cells: 13 full blocks and a partial one
    assert lines[1].count("█") == 13
    assert lines[0].count("█") == 1


def test_table_with_temperatures_rows_and_log(capsys, monkeypatch):
    status, out, _ = run(
        capsys,
        "-f",
        "table",
        "-t",
        "0.5",
        "2",
        "--log",
        stdin="1 2\n3 5\n",
        monkeypatch=monkeypatch,
    )
    assert status == 0
    for caption in ("row 0, T = 0.5", "row 0, T = 2", "row 1, T = 0.5", "row 1, T = 2"):
        assert caption in out
    assert "log p" in out
    status, out, _ = run(capsys, "logsumexp", "1", "3", "2", "-f", "table", "-t", "1", "2")
    assert "logsumexp T=1" in out and "3.40761" in out and "2.18027" in out


def test_a_table_shows_the_first_rows_and_says_how_many_are_left(capsys, monkeypatch):
    text = "\n".join(f"{i} 0" for i in range(25))
    status, out, _ = run(capsys, "-f", "table", stdin=text, monkeypatch=monkeypatch)
    assert status == 0
    assert "row 19" in out and "row 20" not in out
    assert "... 5 more rows (--format plain or -o FILE gives them all)" in out


def test_default_format_is_a_table_on_a_terminal_and_plain_when_piped(capsys, monkeypatch):
    status, out, _ = run(capsys, "1", "3", "2")
    assert "│" not in out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["1", "3", "2"]) == 0
    assert "│" in capsys.readouterr().out


def test_bar():
    from softmaxkit.cli import bar

    assert bar(1.0, 8) == "█" * 8
    assert bar(0.5, 8) == "████"
    assert bar(1 / 16, 8) == "▌"
    assert bar(0.0) == bar(math.nan) == ""


# --- input ----------------------------------------------------------------------------------


def test_stdin_whitespace_commas_blank_lines_and_comments(capsys, monkeypatch):
    text = "# scores\n1, 3, 2\n\n 5.5 -13.2\t0.5 \n"
    status, out, _ = run(capsys, stdin=text, monkeypatch=monkeypatch)
    assert status == 0
    expected = reference_softmax([[1, 3, 2], [5.5, -13.2, 0.5]])
    np.testing.assert_allclose(numbers(out), expected, rtol=2e-15)
    status, out, _ = run(capsys, "-i", "-", stdin="6 3", monkeypatch=monkeypatch)
    np.testing.assert_allclose(numbers(out)[0], reference_softmax([6, 3]), rtol=2e-15)


BATCH = np.asarray([[1.5, -3.5, 2.0], [3.0, 1.0, 0.2]])


@pytest.mark.parametrize("extension", [".npy", ".csv", ".txt", ".json"])
def test_every_input_format(capsys, tmp_path, extension):
    path = tmp_path / f"scores{extension}"
    if extension == ".npy":
        np.save(path, BATCH)
    elif extension == ".csv":
        path.write_text("a,b,c\n" + "\n".join(",".join(map(str, row)) for row in BATCH))
    elif extension == ".txt":
        path.write_text("\n".join(" ".join(map(str, row)) for row in BATCH) + "\n")
    else:
        path.write_text(json.dumps(BATCH.tolist()))
    status, out, err = run(capsys, "-i", str(path))
    assert (status, err) == (0, "")
    np.testing.assert_allclose(numbers(out), reference_softmax(BATCH), rtol=2e-15)


def test_npy_input_keeps_its_dtype_and_shape(capsys, tmp_path):
    path = tmp_path / "scores.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(2, 2, 3))
    out_path = tmp_path / "p.npy"
    status, _, _ = run(capsys, "-i", str(path), "-a", "1", "-o", str(out_path))
    assert status == 0
    result = np.load(out_path)
    assert result.dtype == np.float32 and result.shape == (2, 2, 3)
    np.testing.assert_allclose(result, reference_softmax(np.load(path), axis=1), rtol=1e-6)


# --- output files ---------------------------------------------------------------------------


@pytest.mark.parametrize("extension", [".npy", ".csv", ".txt", ".json"])
def test_output_file_round_trip(capsys, tmp_path, extension):
    scores = tmp_path / "scores.npy"
    np.save(scores, BATCH)
    target = tmp_path / f"p{extension}"
    status, out, err = run(capsys, "-i", str(scores), "-o", str(target))
    assert (status, out, err) == (0, "", "")
    if extension == ".npy":
        read_back = np.load(target)
        np.testing.assert_array_equal(read_back, softmaxkit.softmax(BATCH))
    elif extension == ".json":
        read_back = np.asarray(json.loads(target.read_text()))
    else:
        separator = "," if extension == ".csv" else None
        read_back = np.asarray(
            [[float(v) for v in line.split(separator)] for line in target.read_text().splitlines()]
        )
    # the text formats write every digit: reading back loses nothing
    np.testing.assert_array_equal(read_back, softmaxkit.softmax(BATCH))
    np.testing.assert_allclose(read_back, reference_softmax(BATCH), rtol=2e-15)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".softmax-")]


def test_output_file_is_readable_as_input(capsys, tmp_path):
    target = tmp_path / "p.csv"
    assert main(["1", "3", "2", "-t", "1", "2", "-o", str(target)]) == 0
    status, out, _ = run(capsys, "logsumexp", "-i", str(target))
    assert status == 0
    # the log of the sum of exp(p) for each temperature's row
    rows = np.loadtxt(target, delimiter=",")
    np.testing.assert_allclose(numbers(out)[:, 0], np.log(np.exp(rows).sum(axis=1)), rtol=1e-15)


def test_output_mode_follows_umask(tmp_path):
    target = tmp_path / "p.txt"
    assert main(["1", "2", "-o", str(target)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_leaves_the_old_file_and_no_temporary(capsys, tmp_path, monkeypatch):
    target = tmp_path / "p.npy"
    target.write_bytes(b"old")

    def broken_save(file, *args, **kwargs):
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    status, out, err = run(capsys, "1", "2", "-o", str(target))
    assert status == 1
    assert len(err.splitlines()) == 1 and "No space left" in err and "Traceback" not in err
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["p.npy"]


# --- errors ---------------------------------------------------------------------------------


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["1", "x", "2"], ["VALUE", "'x'"]),
        (["1", "2", "-t", "nan"], ["--temperature", "nan"]),
        (["1", "2", "-t", "-1"], ["--temperature", ">= 0", "-1.0"]),
        (["1", "2", "-t", "warm"], ["--temperature", "'warm'"]),
        (["1", "2", "--format", "xml"], ["--format", "xml"]),
        (["1", "2", "--precision", "0"], ["--precision"]),
        (["1", "2", "--axis", "x"], ["--axis"]),
        (["1", "2", "--axis", "1"], ["--axis", "out of bounds"]),
        (["1", "2", "--axis", "0,0"], ["--axis", "repeated"]),
        (["-i", "MISSING.csv"], ["--input", "no such file", "MISSING.csv"]),
        (["-i", "scores.xlsx"], ["--input", ".xlsx"]),
        (["1", "2", "-o", "p.xlsx"], ["--output", ".xlsx"]),
        (["1", "2", "-o", "no/such/folder/p.npy"], ["--output", "no such folder"]),
        (["1", "2", "--bogus"], ["--bogus"]),
        (["logsumexp", "1", "2", "-t", "nan"], ["--temperature"]),
        (["plot", "heatmap", "-o", "f.png"], ["kind", "heatmap"]),
        (["1", "2", "-o", "p.csv", "-f", "json"], ["--format", "extension"]),
        (["1", "2", "-t", "1,x"], ["--temperature", "'x'"]),
    ],
)
def test_usage_errors(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *argv)
    assert_usage_error(status, out, err, *words)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("ragged.csv", "1,2,3\n4,5\n", ["line 2 has 2 values", "line 1 has 3"]),
        ("bad.txt", "1 2\n3 four\n", ["line 2", "'four'"]),
        ("empty.txt", "\n# nothing\n", ["holds no numbers"]),
        ("bad.json", "[1, 2", ["not valid JSON"]),
        ("ragged.json", "[[1, 2], [3]]", ["same length"]),
        ("words.json", '["a", "b"]', ["numbers"]),
        ("bad.npy", "not an array", ["not a readable .npy"]),
    ],
)
def test_bad_input_files(capsys, tmp_path, name, text, words):
    path = _write(tmp_path, name, text)
    target = tmp_path / "out.npy"
    status, out, err = run(capsys, "-i", path, "-o", str(target))
    assert_usage_error(status, out, err, "--input", *words)
    assert not target.exists()


def test_complex_npy_is_a_usage_error(capsys, tmp_path):
    path = tmp_path / "z.npy"
    np.save(path, np.asarray([1 + 2j]))
    assert_usage_error(*run(capsys, "-i", str(path)), "complex")


def test_stdin_errors(capsys, monkeypatch):
    assert_usage_error(*run(capsys, stdin="1 2\n3\n", monkeypatch=monkeypatch), "line 2")
    assert_usage_error(*run(capsys, stdin="", monkeypatch=monkeypatch), "no numbers")


def test_no_input_on_a_terminal(capsys, monkeypatch):
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr(sys, "stdin", terminal)
    assert_usage_error(*run(capsys), "no scores")
    assert_usage_error(*run(capsys, "-t", "2", "1", "3"), "put the scores before -t")


def test_temperatures_with_commas_and_repeated_options(capsys):
    status, out, _ = run(capsys, "1", "3", "-t", "0.5,2", "-t", "4")
    assert status == 0
    expected = [reference_softmax([1, 3], temperature=t) for t in (0.5, 2, 4)]
    np.testing.assert_allclose(numbers(out), expected, rtol=2e-15)


def test_values_and_input_file_together(capsys):
    assert_usage_error(*run(capsys, "1", "-i", "x.csv"), "not both")


def test_a_failed_computation_exits_1(capsys, monkeypatch):
    import softmaxkit._softmax

    def failing(*args, **kwargs):
        raise FloatingPointError("overflow in the kernel")

    monkeypatch.setattr(softmaxkit._softmax, "softmax", failing)
    status, out, err = run(capsys, "1", "2")
    assert status == 1 and out == ""
    assert err.splitlines() == [
        "softmax: error: computation failed: FloatingPointError: overflow in the kernel"
    ]


def test_help_lists_the_subcommands(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert "softmax logsumexp" in out and "softmax plot" in out and "--temperature" in out
    status, out, _ = run(capsys, "plot", "--help")
    assert status == 0 and "cross-entropy" in out


def test_integer_results_print_as_integers(capsys):
    from softmaxkit import cli

    @cli.command(
        "argmax", help="index of the maximum", arguments=(cli.input_arguments, cli.output_arguments)
    )
    def run_argmax(args):
        return cli.Output(np.argmax(cli.load_input(args), axis=-1), one_per_line=True)

    try:
        assert run(capsys, "argmax", "1", "3", "2")[1] == "1\n"
        assert run(capsys, "argmax", "1", "3", "2", "-f", "json")[1] == "1\n"
        assert run(capsys, "argmax", "1", "3", "2", "-f", "csv", "-p", "2")[1] == "1\n"
    finally:
        del cli.COMMANDS["argmax"]


def test_a_new_subcommand_is_one_function(capsys):
    from softmaxkit import cli

    @cli.command(
        "double", help="twice the scores", arguments=(cli.input_arguments, cli.output_arguments)
    )
    def run_double(args):
        return cli.Output(2 * cli.load_input(args))

    try:
        status, out, _ = run(capsys, "double", "1", "-2.5")
        assert (status, out) == (0, "2.0 -5.0\n")
        assert "softmax double" in run(capsys, "--help")[1]
    finally:
        del cli.COMMANDS["double"]


# --- plot subcommand ------------------------------------------------------------------------


def test_plot_writes_the_image(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "jacobian.png"
    status, out, err = run(capsys, "plot", "jacobian", "6", "3", "-o", str(target), "--dpi", "50")
    assert (status, out, err) == (0, "", "")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # the jacobian figure is 5 x 4.2 inches
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (250, 210)
    target = tmp_path / "t.svg"
    assert main(["plot", "temperature", "1", "2", "-t", "0.5", "2", "-o", str(target)]) == 0
    assert "<svg" in target.read_text()


def test_plot_without_matplotlib_exits_1(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    status, out, err = run(capsys, "plot", "activations", "-o", str(tmp_path / "a.png"))
    assert status == 1 and out == ""
    assert err.splitlines() == [
        'softmax: error: softmaxkit.plot needs matplotlib: pip install "softmaxkit[plot]"'
    ]
    assert os.listdir(tmp_path) == []


def test_plot_failing_to_save_leaves_nothing(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def broken_savefig(self, file, **kwargs):
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    target = tmp_path / "t.png"
    status, out, err = run(capsys, "plot", "temperature", "-o", str(target))
    assert status == 1 and len(err.splitlines()) == 1 and "No space left" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["plot", "jacobian", "-o", "j.gif"], ["--output", ".gif"]),
        (["plot", "activations", "1", "2", "-o", "a.png"], ["takes no scores"]),
        (["plot", "cross-entropy", "-t", "2", "-o", "c.png"], ["takes no temperature"]),
        (["plot", "bench", "-o", "b.png"], ["--input", "results file"]),
        (["plot", "bench", "-i", "missing.md", "-o", "b.png"], ["--input", "missing.md"]),
        (["plot", "jacobian", "1", "x", "-o", "j.png"], ["'x'"]),
        (["plot", "temperature", "-t", "nan", "-o", "t.png"], ["--temperature"]),
        (["plot", "jacobian"], ["-o/--output"]),
    ],
)
def test_plot_usage_errors(capsys, tmp_path, monkeypatch, argv, words):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert_usage_error(*run(capsys, *argv), *words)
    assert os.listdir(tmp_path) == []


def test_plot_jacobian_of_a_batch_is_a_usage_error(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    argv = ["plot", "jacobian", "-i", "-", "-o", "j.png"]
    assert_usage_error(*run(capsys, *argv, stdin="1 2\n3 4\n", monkeypatch=monkeypatch), "1-D")
    assert os.listdir(tmp_path) == []


# --- as a user runs it ----------------------------------------------------------------------


def _environment():
    source = str(Path(softmaxkit.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    return env


def _command(*argv, stdin=None, executable=(sys.executable, "-m", "softmaxkit")):
    return subprocess.run(
        [*executable, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
    )


def test_python_m_softmaxkit(tmp_path):
    done = _command("1", "3", "2")
    assert done.returncode == 0 and done.stderr == ""
    np.testing.assert_allclose(numbers(done.stdout)[0], reference_softmax([1, 3, 2]), rtol=2e-15)
    done = _command("-t", "2", stdin="1,3,2\n6,3,0\n")
    expected = reference_softmax([[1, 3, 2], [6, 3, 0]], temperature=2)
    np.testing.assert_allclose(numbers(done.stdout), expected, rtol=2e-15)


def test_python_m_softmaxkit_usage_error_has_no_traceback(tmp_path):
    target = tmp_path / "p.npy"
    done = _command("1", "abc", "-o", str(target))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "softmax: error: argument VALUE: could not parse 'abc' as a number\n"
    assert not target.exists()


def test_python_m_softmaxkit_round_trip(tmp_path):
    target = tmp_path / "p.npy"
    done = _command("5.5", "-13.2", "0.5", "--log", "-o", str(target))
    assert done.returncode == 0
    np.testing.assert_array_equal(np.load(target), softmaxkit.log_softmax([5.5, -13.2, 0.5]))


def test_console_script():
    folder = os.path.dirname(sys.executable)
    script = shutil.which("softmax", path=os.pathsep.join([folder, os.environ.get("PATH", "")]))
    if script is None:
        pytest.skip("the softmax console script is not installed")
    done = _command("6", "3", executable=(script,))
    assert done.returncode == 0
    np.testing.assert_allclose(numbers(done.stdout)[0], reference_softmax([6, 3]), rtol=2e-15)
    done = _command("6", "3", "--format", "yaml", executable=(script,))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1


def test_import_softmaxkit_stays_light():
    code = (
        "import sys, softmaxkit, softmaxkit.cli, softmaxkit.plot; "
        "print(sorted(m for m in ('rich', 'matplotlib', 'torch', 'jax', 'tensorflow', 'scipy')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
    )
    assert done.stdout.strip() == "[]", done.stderr
