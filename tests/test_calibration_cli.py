"""``softmax calibrate``, run as a user runs it: the installed console script in a subprocess.

The printed numbers are compared with the library's functions on the same files; the
written logits with the fitted map applied here; errors are one line with exit status
2 (usage) or 1 (a computation or a missing extra), and a failed run leaves files as
they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import softmaxkit as smk

FOLDER = os.path.dirname(sys.executable)
SCRIPT = shutil.which("softmax", path=os.pathsep.join([FOLDER, os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(SCRIPT is None, reason="the softmax console script is missing")


def softmax(*argv, cwd):
    return subprocess.run(
        [SCRIPT, *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=600)
    logits = 4 * (rng.normal(size=(600, 4)) + 1.2 * np.eye(4)[labels])  # over-confident
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path, logits, labels


def parse_report(text):
    """{name: value} of the report's first lines and {metric: (before, after)}."""
    header, metrics = {}, {}
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in ("NLL", "ECE", "Brier"):
            metrics[fields[0]] = (float(fields[1]), float(fields[2]))
        elif len(fields) >= 2 and fields[0] not in ("before",):
            header[fields[0]] = " ".join(fields[1:])
    return header, metrics


def expected_metrics(logits, labels):
    return {
        "NLL": smk.negative_log_likelihood(logits, labels, from_logits=True),
        "ECE": smk.expected_calibration_error(logits, labels, from_logits=True),
        "Brier": smk.brier_score(logits, labels, from_logits=True),
    }


def test_temperature_report_and_outputs(data):
    folder, logits, labels = data
    result = softmax(
        "calibrate", "-i", "logits.npy", "--labels", "labels.npy", "-o", "calibrated.npy",
        "--plot", "reliability.png", cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    header, metrics = parse_report(result.stdout)
    t = smk.fit_temperature(logits, labels)
    assert header["method"] == "temperature"
    assert float(header["temperature"]) == pytest.approx(t, rel=1e-5)
    before, after = expected_metrics(logits, labels), expected_metrics(logits / t, labels)
    for name in ("NLL", "ECE", "Brier"):
        assert metrics[name][0] == pytest.approx(before[name], rel=1e-5)
        assert metrics[name][1] == pytest.approx(after[name], rel=1e-5)
    assert metrics["ECE"][1] < metrics["ECE"][0] / 3
    np.testing.assert_allclose(np.load(folder / "calibrated.npy"), logits / t, rtol=1e-12)
    assert (folder / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(folder) if p.startswith(".softmax-")]  # no temporaries


@pytest.mark.parametrize("method", ["vector", "matrix"])
def test_scaling_methods_write_the_mapped_logits(data, method):
    folder, logits, labels = data
    result = softmax(
        "calibrate", "-i", "logits.npy", "--labels", "labels.npy", "--method", method,
        "-o", "calibrated.npy", cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    fit = smk.fit_vector_scaling if method == "vector" else smk.fit_matrix_scaling
    scaling = fit(logits, labels)
    np.testing.assert_allclose(np.load(folder / "calibrated.npy"), scaling(logits), atol=1e-6)
    header, metrics = parse_report(result.stdout)
    assert header["method"] == method
    assert int(header["iterations"]) == scaling.n_iter
    after = expected_metrics(scaling(logits), labels)
    assert metrics["NLL"][1] == pytest.approx(after["NLL"], rel=1e-5)


def test_matrix_l2_penalty_reaches_the_fit(data):
    folder, logits, labels = data
    result = softmax(
        "calibrate", "-i", "logits.npy", "--labels", "labels.npy", "--method", "matrix",
        "--l2", "1000", "-o", "out.npy", cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    scaling = smk.fit_matrix_scaling(logits, labels, l2_off_diagonal=1000.0, l2_bias=1000.0)
    np.testing.assert_allclose(np.load(folder / "out.npy"), scaling(logits), atol=1e-6)


def test_text_inputs_and_outputs(data):
    folder, logits, labels = data
    np.savetxt(folder / "logits.csv", logits, delimiter=",", fmt="%.17g")
    (folder / "labels.txt").write_text("\n".join(str(v) for v in labels) + "\n")
    result = softmax(
        "calibrate", "-i", "logits.csv", "--labels", "labels.txt", "-o", "out.json", cwd=folder
    )
    assert result.returncode == 0, result.stderr
    t = smk.fit_temperature(logits, labels)
    np.testing.assert_allclose(
        np.asarray(json.loads((folder / "out.json").read_text())), logits / t, rtol=1e-10
    )
    # Probabilities as labels (soft targets), the shape of the logits.
    np.save(folder / "soft.npy", np.eye(4)[labels])
    soft = softmax("calibrate", "-i", "logits.npy", "--labels", "soft.npy", cwd=folder)
    assert soft.returncode == 0, soft.stderr
    assert float(parse_report(soft.stdout)[0]["temperature"]) == pytest.approx(t, rel=1e-5)


def test_separated_logits_warn_on_stderr(tmp_path):
    np.save(tmp_path / "logits.npy", np.array([[3.0, 0.0], [0.0, 2.0], [4.0, 1.0]]))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0]))
    result = softmax("calibrate", "-i", "logits.npy", "--labels", "labels.npy", cwd=tmp_path)
    assert result.returncode == 0
    assert "warning: the logits separate the labels perfectly" in result.stderr
    assert float(parse_report(result.stdout)[0]["temperature"]) == 0.01


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--labels", "labels.npy"], "the following arguments are required: -i/--input"),
        (["-i", "logits.npy"], "the following arguments are required: --labels"),
        (["-i", "missing.npy", "--labels", "labels.npy"], "-i/--input: no such file"),
        (["-i", "logits.npy", "--labels", "missing.npy"], "--labels: no such file"),
        (["-i", "logits.npy", "--labels", "bad.npy"], r"class indices in \[0, 4\)"),
        (["-i", "logits.npy", "--labels", "short.npy"], "labels of integer dtype"),
        (["-i", "logits.npy", "--labels", "labels.npy", "--method", "x"], "invalid choice"),
        (["-i", "logits.npy", "--labels", "labels.npy", "--bins", "0"], "bins must be >= 1"),
        (["-i", "logits.npy", "--labels", "labels.npy", "--l2", "-1"], "l2 must be >= 0"),
        (["-i", "logits.npy", "--labels", "labels.npy", "-o", "x.bin"], "unknown format '.bin'"),
        (["-i", "logits.npy", "--labels", "labels.npy", "--plot", "x.gif"], "--plot: unknown"),
        (["-i", "logits.npy", "--labels", "labels.npy", "--plot", "no/x.png"], "no such folder"),
        (["-i", "logits.npy", "--labels", "labels.npy", "-a", "2"], "-a/--axis: axis 2"),
        (["-i", "nan.npy", "--labels", "labels.npy"], "logits must be finite or -inf"),
        (["-i", "logits.npy", "--labels", "fraction.txt"], "whole numbers, got 0.5"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(data, argv, match):
    folder, logits, labels = data
    np.save(folder / "bad.npy", np.where(labels == 0, 9, labels))
    np.save(folder / "short.npy", labels[:10])
    bad = logits.copy()
    bad[3, 1] = np.nan
    np.save(folder / "nan.npy", bad)
    (folder / "fraction.txt").write_text("0.5\n" * len(labels))
    (folder / "existing.npy").write_bytes(b"keep me")
    output = [] if "-o" in argv else ["-o", "existing.npy"]  # a file a failure must not touch
    result = softmax("calibrate", *argv, *output, cwd=folder)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmax: error: ")
    assert re.search(match, lines[0]), lines[0]
    assert (folder / "existing.npy").read_bytes() == b"keep me"
    assert result.stdout == ""


def test_missing_scipy_is_a_runtime_error_with_status_1(data):
    folder, _, _ = data
    code = (
        "import sys; sys.modules['scipy'] = None; sys.modules['scipy.optimize'] = None\n"
        "from softmaxkit.cli import main\n"
        "sys.exit(main(['calibrate', '-i', 'logits.npy', '--labels', 'labels.npy', "
        "'--method', 'vector']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=folder, timeout=300
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        'softmax: error: vector and matrix scaling need SciPy: pip install '
        '"softmaxkit[calibration]"'
    ]


def test_a_failed_write_leaves_the_old_file(data, monkeypatch, capsys):
    from softmaxkit.cli import main

    folder, _, _ = data
    monkeypatch.chdir(folder)
    (folder / "out.npy").write_bytes(b"old")

    def broken_save(file, *args, **kwargs):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    status = main(["calibrate", "-i", "logits.npy", "--labels", "labels.npy", "-o", "out.npy"])
    assert status == 1
    assert capsys.readouterr().err.strip() == "softmax: error: No space left on device: out.npy"
    assert (folder / "out.npy").read_bytes() == b"old"
    assert not [p for p in os.listdir(folder) if p.startswith(".softmax-")]


def test_listed_in_the_help():
    result = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, timeout=300)
    assert "softmax calibrate" in result.stdout
    result = subprocess.run(
        [SCRIPT, "calibrate", "--help"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "--method {temperature,vector,matrix}" in result.stdout
