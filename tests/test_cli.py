"""The ``softmax`` command: every option, input format and error case.

Most tests call ``softmaxkit.cli.main(argv)`` in-process (fast); a few run the
command in a subprocess, as a user would (``python -m softmaxkit`` and the
``softmax`` console script where it is installed). Results are compared with the
classic examples' reference values (mpmath, shipped as ``softmaxkit/data/seed_examples.json``)
or with the
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
import softmaxkit.demo
from softmaxkit.cli import main

# The classic examples and their 60-digit results, as the package ships them.
SEEDS = softmaxkit.demo.load_seed_examples()


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


def test_several_temperatures_give_one_row_each(capsys):
    sweep = SEEDS["temperature_sweep"]
    argv = [str(v) for v in sweep["input"]]
    status, out, _ = run(capsys, *argv, "-t", *map(str, sweep["temperatures"]))
    assert status == 0
    np.testing.assert_allclose(numbers(out), sweep["softmax"], rtol=4e-15, atol=1e-300)


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
        # The benchmark figure is benchmarks/plot_results.py, not a kind of the command.
        (["plot", "bench", "-o", "b.png"], ["kind", "bench"]),
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
        ("bad.npy", "not an array", ["not a valid .npy"]),
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


# --- sample -------------------------------------------------------------------------------


def integers(text):
    return np.asarray([[int(v) for v in line.split()] for line in text.splitlines()])


@pytest.mark.parametrize(
    ("options", "library_options"),
    [
        ([], {}),
        (["-n", "6"], {"num_samples": 6}),
        (["--num-samples", "4", "--no-replace"], {"num_samples": 4, "replace": False}),
        (["-n", "5", "--replace"], {"num_samples": 5, "replace": True}),
        (["-k", "2", "-n", "8"], {"top_k": 2, "num_samples": 8}),
        (
            ["--top-k", "3", "--top-p", "0.9", "-n", "8"],
            {"top_k": 3, "top_p": 0.9, "num_samples": 8},
        ),
        (["--min-p", "0.2", "-n", "8"], {"min_p": 0.2, "num_samples": 8}),
        (["-t", "0.5", "-n", "8"], {"temperature": 0.5, "num_samples": 8}),
        (["--temperature", "inf", "-n", "3"], {"temperature": math.inf, "num_samples": 3}),
    ],
)
def test_sample_matches_the_library_with_the_same_seed(
    capsys, monkeypatch, options, library_options
):
    logits = np.array([[1.0, 3.0, 2.0, 0.5, -1.0], [0.0, 0.0, 4.0, 1.0, 2.0]])
    stdin = "1 3 2 0.5 -1\n0,0,4,1,2\n"
    argv = ["sample", *options, "--seed", "7"]
    status, out, err = run(capsys, *argv, stdin=stdin, monkeypatch=monkeypatch)
    assert (status, err) == (0, "")
    expected = softmaxkit.sample(logits, rng=7, **library_options)
    np.testing.assert_array_equal(integers(out), expected.reshape(2, -1))
    # one row per line; without -n, one index per line
    assert len(out.splitlines()) == 2
    status, out, _ = run(capsys, "sample", "1", "3", "2", "0.5", "-1", *options, "-s", "7")
    np.testing.assert_array_equal(
        integers(out).ravel(), np.ravel(softmaxkit.sample(logits[0], rng=7, **library_options))
    )


def test_sample_filters_hold(capsys):
    logits = ["1", "3", "2", "0.5", "-1"]
    # the entries top-k keeps, computed without the library: the two largest scores
    status, out, _ = run(capsys, "sample", *logits, "-k", "2", "-n", "200", "-s", "1")
    assert set(integers(out).ravel()) == {1, 2}
    status, out, _ = run(capsys, "sample", *logits, "-t", "0", "-n", "3")
    assert out == "1 1 1\n"
    status, out, _ = run(capsys, "sample", *logits, "--no-replace", "-n", "5", "-s", "2")
    assert sorted(integers(out).ravel()) == [0, 1, 2, 3, 4]
    # min-p 0.5 keeps the entries within log 2 of the maximum: 3 and 2.5 of these
    status, out, _ = run(capsys, "sample", "1", "3", "2.5", "--min-p", "0.5", "-n", "200")
    assert set(integers(out).ravel()) == {1, 2}
    assert run(capsys, "sample", *logits, "-n", "0")[:2] == (0, "\n")


def test_sample_top_k_zero_means_no_top_k_filter(capsys):
    # Hugging Face's convention, which the library follows: top_k=0 filters nothing.
    logits = ["1", "3", "2", "0.5", "-1"]
    for options in ([], ["--top-p", "0.9"], ["-t", "0.5", "--min-p", "0.1"]):
        argv = ["sample", *logits, "-n", "50", "-s", "5", *options]
        status, out, err = run(capsys, *argv, "--top-k", "0")
        assert (status, err) == (0, "")
        assert out == run(capsys, *argv)[1]
    # Every entry stays allowed: at a temperature of 100 (nearly uniform), 400 draws reach
    # all five (each is missed with probability below (4/5 + 0.01)**400), where -k 1
    # keeps only the maximum.
    out = run(capsys, "sample", *logits, "-k", "0", "-t", "100", "-n", "400", "-s", "1")[1]
    assert set(integers(out).ravel()) == {0, 1, 2, 3, 4}
    out = run(capsys, "sample", *logits, "-k", "1", "-t", "100", "-n", "50", "-s", "1")[1]
    assert set(integers(out).ravel()) == {1}
    assert "no top-k filter" in run(capsys, "sample", "--help")[1]


def test_sample_is_reproducible_and_seeds_differ(capsys):
    argv = ["sample", *map(str, range(10)), "-n", "30"]
    first = run(capsys, *argv, "-s", "3")[1]
    assert run(capsys, *argv, "-s", "3")[1] == first
    assert run(capsys, *argv, "-s", "4")[1] != first


@pytest.mark.parametrize("extension", [".npy", ".json", ".csv", ".txt"])
def test_sample_files(capsys, tmp_path, extension):
    logits = np.array([[0.0, 2.0, 1.0], [5.0, 1.0, 1.0]])
    source = tmp_path / "logits.npy"
    np.save(source, logits)
    target = tmp_path / f"drawn{extension}"
    status, out, err = run(
        capsys, "sample", "-i", str(source), "-n", "4", "-s", "0", "-o", str(target)
    )
    assert (status, out, err) == (0, "", "")
    expected = softmaxkit.sample(logits, num_samples=4, rng=0)
    if extension == ".npy":
        drawn = np.load(target)
        assert drawn.dtype.kind == "i"
    elif extension == ".json":
        drawn = np.asarray(json.loads(target.read_text()))
    else:
        drawn = np.loadtxt(target, delimiter="," if extension == ".csv" else None, dtype=int)
    np.testing.assert_array_equal(drawn, expected)
    assert run(capsys, "sample", "-i", str(source), "-s", "0", "-f", "json")[1] == (
        json.dumps(softmaxkit.sample(logits, rng=0).tolist()) + "\n"
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--top-k", "-1"], ["-k/--top-k", ">= 0", "-1"]),
        (["--top-k", "-2"], ["-k/--top-k", "-2"]),
        (["-k", "1.5"], ["-k/--top-k", "'1.5'"]),
        (["--top-p", "0"], ["--top-p", "(0, 1]"]),
        (["--top-p", "1.5"], ["--top-p", "(0, 1]", "1.5"]),
        (["--top-p", "nan"], ["--top-p", "nan"]),
        (["--top-p", "x"], ["--top-p", "'x'"]),
        (["--min-p", "-0.1"], ["--min-p", "[0, 1]"]),
        (["--min-p", "2"], ["--min-p", "[0, 1]"]),
        (["-n", "-1"], ["-n/--num-samples", ">= 0"]),
        (["--num-samples", "two"], ["-n/--num-samples", "'two'"]),
        (["--seed", "-1"], ["-s/--seed", ">= 0"]),
        (["-t", "nan"], ["-t/--temperature", "nan"]),
        (["-t", "-1"], ["-t/--temperature", ">= 0"]),
        (["-t", "1,2"], ["-t/--temperature", "one temperature"]),
        (["--replace=no"], ["--replace"]),
        (["-f", "yaml"], ["-f/--format", "yaml"]),
        (["-o", "drawn.gif"], ["-o/--output", ".gif"]),
        (["-o", "drawn.npy", "-f", "json"], ["-f/--format"]),
        (["-i", "missing.csv"], ["-i/--input", "missing.csv"]),
        (["1", "x"], ["VALUE", "'x'"]),
    ],
)
def test_sample_usage_errors(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    values = [] if any(a in ("-i", "1") for a in argv) else ["1", "2"]
    output = [] if "-o" in argv else ["-o", "out.npy"]
    assert_usage_error(*run(capsys, "sample", *values, *argv, *output), *words)
    assert os.listdir(tmp_path) == []
    assert_usage_error(*run(capsys, "sample", *values, *argv), *words)


@pytest.mark.parametrize(
    ("stdin", "argv", "words"),
    [
        ("-inf -inf\n", [], ["the row has no allowed entry"]),
        ("1 2\n-inf -inf\n", [], ["row 1 has no allowed entry"]),
        ("1 2\nnan 1\n", [], ["row 1", "NaN"]),
        ("1 2 -inf\n", ["-n", "3", "--no-replace"], ["num_samples=3", "only 2 allowed"]),
    ],
)
def test_sample_rows_that_cannot_be_drawn_from_exit_1(
    capsys, tmp_path, monkeypatch, stdin, argv, words
):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(
        capsys, "sample", *argv, "-o", "out.npy", stdin=stdin, monkeypatch=monkeypatch
    )
    assert status == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("softmax: error: computation failed: ValueError: ")
    assert all(word in line for word in words), line
    assert os.listdir(tmp_path) == []


# --- sparsemax and entmax -------------------------------------------------------------------


def reference_sparsemax(z):
    """The Euclidean projection onto the simplex by sorting (Martins & Astudillo 2016)."""
    z = np.asarray(z, dtype=np.longdouble)
    ordered = np.sort(z)[::-1]
    cumulative = np.cumsum(ordered)
    k = np.arange(1, z.size + 1)
    support = k[1 + k * ordered > cumulative].max()
    tau = (cumulative[support - 1] - 1) / support
    return np.asarray(np.maximum(z - tau, 0), dtype=np.float64)


def test_sparsemax_equals_the_library(capsys, monkeypatch):
    status, out, err = run(capsys, "sparsemax", "1", "3", "2.5")
    assert (status, err) == (0, "")
    np.testing.assert_array_equal(numbers(out)[0], softmaxkit.sparsemax([1.0, 3.0, 2.5]))
    np.testing.assert_allclose(numbers(out)[0], reference_sparsemax([1, 3, 2.5]), atol=1e-15)
    batch = np.array([[1.0, 3.0, 2.5], [0.2, 0.1, -4.0]])
    out = run(
        capsys,
        "sparsemax",
        "-t",
        "0.5",
        "2",
        stdin="1 3 2.5\n0.2 0.1 -4\n",
        monkeypatch=monkeypatch,
    )[1]
    expected = np.stack([softmaxkit.sparsemax(batch, temperature=t) for t in (0.5, 2.0)])
    np.testing.assert_array_equal(numbers(out), expected.reshape(4, 3))
    np.testing.assert_allclose(numbers(out)[2], reference_sparsemax(batch[0] / 2), atol=1e-15)
    out = run(
        capsys,
        "sparsemax",
        "-a",
        "0",
        "-f",
        "json",
        stdin="1 3 2.5\n0.2 0.1 -4\n",
        monkeypatch=monkeypatch,
    )[1]
    np.testing.assert_array_equal(json.loads(out), softmaxkit.sparsemax(batch, axis=0))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], lambda x: softmaxkit.entmax15(x)),
        (["--alpha", "1.5"], lambda x: softmaxkit.entmax15(x)),
        (["--alpha", "1.25"], lambda x: softmaxkit.entmax(x, alpha=1.25)),
        (["--alpha", "2"], lambda x: softmaxkit.sparsemax(x)),
        (["--alpha", "1"], lambda x: softmaxkit.entmax(x, alpha=1.0)),
        (["--alpha", "1.5", "-t", "3"], lambda x: softmaxkit.entmax15(x, temperature=3.0)),
    ],
)
def test_entmax_equals_the_library(capsys, options, expected):
    x = [1.0, 3.0, 2.5, -0.5]
    status, out, err = run(capsys, "entmax", "1", "3", "2.5", "-0.5", *options)
    assert (status, err) == (0, "")
    np.testing.assert_array_equal(numbers(out)[0], expected(x))


def test_entmax_limits_are_sparsemax_and_softmax(capsys):
    # alpha = 2 is sparsemax (exact), alpha = 1 softmax (bisection, to a few ulp)
    out = run(capsys, "entmax", "1", "3", "2.5", "--alpha", "2")[1]
    np.testing.assert_allclose(numbers(out)[0], reference_sparsemax([1, 3, 2.5]), atol=1e-15)
    out = run(capsys, "entmax", "1", "3", "2.5", "--alpha", "2.0000001")[1]
    np.testing.assert_allclose(numbers(out)[0], reference_sparsemax([1, 3, 2.5]), atol=1e-6)
    out = run(capsys, "entmax", "1", "3", "2.5", "--alpha", "1")[1]
    np.testing.assert_allclose(numbers(out)[0], reference_softmax([1, 3, 2.5]), rtol=1e-12)


def test_sparse_commands_table_and_files(capsys, tmp_path):
    status, out, _ = run(capsys, "sparsemax", "1", "3", "2.5", "-f", "table")
    assert status == 0 and "sparsemax" in out and "0.75" in out and "█" in out
    out = run(capsys, "entmax", "1", "3", "2.5", "--alpha", "1.25", "-f", "table")[1]
    assert "entmax-1.25" in out
    target = tmp_path / "p.npy"
    assert main(["entmax", "1", "3", "2.5", "-o", str(target)]) == 0
    np.testing.assert_array_equal(np.load(target), softmaxkit.entmax15([1.0, 3.0, 2.5]))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["entmax", "--alpha", "0.5"], ["--alpha", ">= 1", "0.5"]),
        (["entmax", "--alpha", "nan"], ["--alpha", "nan"]),
        (["entmax", "--alpha", "inf"], ["--alpha", "finite"]),
        (["entmax", "--alpha", "x"], ["--alpha", "'x'"]),
        (["sparsemax", "--alpha", "1.5"], ["--alpha"]),
        (["sparsemax", "-a", "3"], ["-a/--axis"]),
        (["entmax", "-t", "nan"], ["-t/--temperature"]),
        (["sparsemax", "-o", "p.gif"], ["-o/--output", ".gif"]),
    ],
)
def test_sparse_usage_errors(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert_usage_error(*run(capsys, *argv[:1], "1", "2", *argv[1:]), *words)
    assert os.listdir(tmp_path) == []


# --- bandit ---------------------------------------------------------------------------------


def test_bandit_prints_the_testbed_table(capsys):
    from softmaxkit import _bandit

    argv = ["bandit", "--runs", "4", "--steps", "12", "--seed", "3", "-t", "0.1", "2"]
    status, out, err = run(capsys, *argv, "--epsilon", "0.2")
    assert (status, err) == (0, "")
    results = _bandit.run_testbed(runs=4, steps=12, temperatures=(0.1, 2.0), epsilon=0.2, seed=3)
    assert out == "4 runs x 12 steps\n" + _bandit.summary(results)
    lines = out.splitlines()
    assert [line.split()[0:2] for line in lines[2:]] == [
        ["softmax", "T=0.1"],
        ["softmax", "T=2"],
        ["ε-greedy", "ε=0.2"],
    ]
    # the summary's numbers: means over the last 10% of the steps (here the last one)
    reward, optimal = results["softmax T=2"]
    assert lines[3].split()[2:] == [f"{reward[-1]:.3f}", f"{100 * optimal[-1]:.1f}%"]
    assert run(capsys, "bandit", "--runs", "2", "--steps", "3")[1].count("softmax T=") == 6


def test_bandit_writes_the_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "bandit.png"
    argv = ["bandit", "--runs", "3", "--steps", "8", "-o", str(target), "--dpi", "20"]
    status, out, err = run(capsys, *argv)
    assert status == 0 and err == "" and out.startswith("3 runs x 8 steps")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # the figure is 9 x 8 inches
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (180, 160)
    assert main(["bandit", "--runs", "2", "--steps", "4", "-o", str(tmp_path / "b.svg")]) == 0
    assert "<svg" in (tmp_path / "b.svg").read_text()


def test_bandit_plot_failures_leave_nothing(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def broken_savefig(self, file, **kwargs):
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    status, out, err = run(
        capsys, "bandit", "--runs", "2", "--steps", "3", "-o", str(tmp_path / "b.png")
    )
    assert status == 1 and out == "" and "No space left" in err
    assert os.listdir(tmp_path) == []
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    status, out, err = run(
        capsys, "bandit", "--runs", "2", "--steps", "3", "-o", str(tmp_path / "b.png")
    )
    assert status == 1 and out == "" and "softmaxkit[plot]" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--runs", "0"], ["--runs", ">= 1"]),
        (["--steps", "x"], ["--steps", "'x'"]),
        (["-t", "nan"], ["-t/--temperature", "nan"]),
        (["--epsilon", "2"], ["--epsilon", "[0, 1]"]),
        (["--seed", "-3"], ["-s/--seed"]),
        (["-o", "b.gif"], ["-o/--output", ".gif"]),
        (["-o", "missing/b.png"], ["-o/--output", "no such folder"]),
        (["1", "2"], ["unrecognized arguments"]),
    ],
)
def test_bandit_usage_errors(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert_usage_error(*run(capsys, "bandit", "--runs", "2", "--steps", "2", *argv), *words)
    assert os.listdir(tmp_path) == []


def test_bandit_example_script_calls_the_package(capsys, tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "bandit.py"
    if not path.is_file():
        pytest.skip("examples/ is not next to the tests")
    spec = importlib.util.spec_from_file_location("bandit_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--runs", "3", "--steps", "5", "--seed", "2", "--no-plot"])
    from softmaxkit import _bandit

    expected = _bandit.run_testbed(runs=3, steps=5, seed=2)
    assert list(results) == list(expected)
    for label, (reward, optimal) in expected.items():
        np.testing.assert_array_equal(results[label][0], reward)
        np.testing.assert_array_equal(results[label][1], optimal)


def test_help_lists_the_new_subcommands(capsys):
    out = run(capsys, "--help")[1]
    for name in ("sample", "sparsemax", "entmax", "bandit"):
        assert f"softmax {name}" in out
    assert "--top-p" in run(capsys, "sample", "--help")[1]
    assert "sparse" in run(capsys, "plot", "--help")[1]


def test_plot_sparse(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "sparse.png"
    assert run(capsys, "plot", "sparse", "2", "1", "-1", "-t", "0.5", "-o", str(target)) == (
        0,
        "",
        "",
    )
    data = target.read_bytes()
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (800, 360)
    status, out, err = run(capsys, "plot", "sparse", "-t", "1", "2", "-o", str(target))
    assert status == 2 and "takes one temperature" in err


# --- as a user runs it ----------------------------------------------------------------------


def _environment():
    source = str(Path(softmaxkit.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    return env


def _command(*argv, stdin=None, executable=(sys.executable, "-m", "softmaxkit"), timeout=120):
    return subprocess.run(
        [*executable, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=timeout,
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


def test_python_m_softmaxkit_subcommands(tmp_path):
    logits = np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]])
    done = _command("sample", "-n", "5", "--top-p", "0.95", "-s", "11", stdin="1 3 2\n0 -1 4\n")
    assert done.returncode == 0 and done.stderr == ""
    np.testing.assert_array_equal(
        integers(done.stdout), softmaxkit.sample(logits, num_samples=5, top_p=0.95, rng=11)
    )
    done = _command("sample", "-inf", "-inf", "-o", str(tmp_path / "s.npy"))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "no allowed entry" in done.stderr and "Traceback" not in done.stderr
    done = _command("sample", "1", "2", "--top-p", "1.5")
    assert done.returncode == 2 and done.stderr.startswith("softmax: error: argument --top-p")
    target = tmp_path / "p.npy"
    done = _command("sparsemax", "-i", "-", "-o", str(target), stdin="1 3 2\n0 -1 4\n")
    assert done.returncode == 0
    np.testing.assert_array_equal(np.load(target), softmaxkit.sparsemax(logits))
    done = _command("entmax", "1", "3", "2", "--alpha", "1.5")
    np.testing.assert_array_equal(numbers(done.stdout)[0], softmaxkit.entmax15([1.0, 3.0, 2.0]))
    done = _command("entmax", "1", "3", "--alpha", "0")
    assert done.returncode == 2 and "--alpha" in done.stderr and len(done.stderr.splitlines()) == 1


def test_python_m_softmaxkit_bandit(tmp_path):
    pytest.importorskip("matplotlib")
    done = _command("bandit", "--runs", "2", "--steps", "3", "-o", str(tmp_path / "b.png"))
    assert done.returncode == 0 and "softmax T=0.1" in done.stdout
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


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


def test_large_npy_files_stream_through_softmax_file(tmp_path, monkeypatch):
    """Above the size threshold, -i X.npy -o Y.npy goes through softmax_file in blocks."""
    from softmaxkit import cli, streaming

    x = np.random.default_rng(4).standard_normal((64, 50)).astype(np.float32)
    source, target = tmp_path / "scores.npy", tmp_path / "probs.npy"
    np.save(source, x)
    calls = []
    real = streaming.softmax_file

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli._input, "LARGE_INPUT_BYTES", 1024)
    monkeypatch.setattr(streaming, "softmax_file", spy)
    assert cli.main(["-i", str(source), "-o", str(target), "-t", "0.5", "--log"]) == 0
    assert calls and calls[0]["kind"] == "log_softmax" and calls[0]["temperature"] == 0.5
    np.testing.assert_allclose(
        np.load(target), softmaxkit.log_softmax(x, temperature=0.5), rtol=4 * 2**-23, atol=0
    )
    # Several temperatures stack their results: read whole, not streamed.
    calls.clear()
    assert cli.main(["-i", str(source), "-o", str(target), "-t", "0.5", "2"]) == 0
    assert not calls and np.load(target).shape == (2, 64, 50)
