"""examples/calibration.py: a real model on real data is over-confident, and calibrated after.

The model and the data are scikit-learn's (an MLP trained on the bundled digits); the
assertions are the example's claims with margins, not its exact numbers, which depend
on the BLAS that trains the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "calibration.py"


def test_the_example_calibrates_an_over_confident_classifier(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("calibration_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    target = tmp_path / "figures" / "reliability.png"
    results = example.main([str(target)])
    before, after = results["uncalibrated"], results["temperature"]
    assert results["fitted_temperature"] > 3  # over-confident: the logits are divided down
    assert before["ECE"] > 0.05
    assert after["ECE"] < before["ECE"] / 2
    assert after["NLL"] < before["NLL"] / 3
    assert after["Brier"] < before["Brier"]
    assert after["accuracy"] == before["accuracy"]  # a temperature changes no prediction
    for method in ("vector", "matrix"):
        assert results[method]["NLL"] < before["NLL"] / 3
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert f"fitted temperature T = {results['fitted_temperature']:.4f}" in printed
    assert f"{100 * after['ECE']:.2f}%" in printed
