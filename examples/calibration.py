"""Calibrate an over-confident classifier of handwritten digits; draw docs/images/reliability.png.

A small neural network (scikit-learn's ``MLPClassifier``, one hidden layer, no weight
decay, trained by L-BFGS until its training loss is ~0) is fitted on 10% of the
digits data set that ships with scikit-learn (``sklearn.datasets.load_digits``: 1797
images of 8x8 pixels, no download). Its logits, the pre-softmax activations, are
over-confident on new images. Temperature scaling (and vector and matrix scaling)
is fitted on a calibration split and judged on a test split that neither the model
nor the calibration has seen.

Usage: python examples/calibration.py [reliability.png]
Needs: pip install "softmaxkit[calibration,plot]"
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import softmaxkit as smk

SEED = 0


def splits():
    """(train, calibration, test) pairs of (images, labels): 10%, 45%, 45%, stratified."""
    images, labels = load_digits(return_X_y=True)
    images = images / 16.0  # pixel intensities 0..16
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, train_size=0.1, stratify=labels, random_state=SEED
    )
    x_calibration, x_test, y_calibration, y_test = train_test_split(
        x_rest, y_rest, train_size=0.5, stratify=y_rest, random_state=SEED
    )
    return (x_train, y_train), (x_calibration, y_calibration), (x_test, y_test)


def train(images, labels):
    """An MLP trained to a training loss of ~0: the way to over-confidence."""
    model = MLPClassifier(
        hidden_layer_sizes=(64,), alpha=0.0, solver="lbfgs", max_iter=2000, tol=0.0,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(images, labels)
    return model


def logits_of(model, images):
    """The pre-softmax activations of the MLP (ReLU hidden layer, then the output layer)."""
    hidden = np.maximum(images @ model.coefs_[0] + model.intercepts_[0], 0.0)
    return hidden @ model.coefs_[1] + model.intercepts_[1]


def scores(logits, labels):
    return {
        "accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
        "NLL": smk.negative_log_likelihood(logits, labels, from_logits=True),
        "ECE": smk.expected_calibration_error(logits, labels, from_logits=True),
        "Brier": smk.brier_score(logits, labels, from_logits=True),
    }


def main(argv: list[str]) -> dict:
    root = Path(__file__).resolve().parents[1]
    target = Path(argv[0]) if argv else root / "docs" / "images" / "reliability.png"
    (x_train, y_train), (x_calibration, y_calibration), (x_test, y_test) = splits()
    model = train(x_train, y_train)
    calibration_logits = logits_of(model, x_calibration)
    test_logits = logits_of(model, x_test)

    temperature = smk.fit_temperature(calibration_logits, y_calibration)
    vector = smk.fit_vector_scaling(calibration_logits, y_calibration)
    matrix = smk.fit_matrix_scaling(
        calibration_logits, y_calibration, l2_off_diagonal=1e-2, l2_bias=1e-2
    )
    results = {
        "uncalibrated": scores(test_logits, y_test),
        "temperature": scores(test_logits / temperature, y_test),
        "vector": scores(vector(test_logits), y_test),
        "matrix": scores(matrix(test_logits), y_test),
    }
    print(
        f"digits: {len(y_train)} training, {len(y_calibration)} calibration, "
        f"{len(y_test)} test images; training loss {model.loss_:.2g}"
    )
    print(f"fitted temperature T = {temperature:.4f}")
    print(f"{'test split':<16}{'accuracy':>10}{'NLL':>10}{'ECE':>10}{'Brier':>10}")
    for name, row in results.items():
        print(
            f"{name:<16}{100 * row['accuracy']:>9.2f}%{row['NLL']:>10.4f}"
            f"{100 * row['ECE']:>9.2f}%{row['Brier']:>10.4f}"
        )

    figure = smk.reliability_diagram(
        test_logits, y_test, from_logits=True, calibrated=test_logits / temperature,
        titles=(
            "MLP on digits (test split), uncalibrated",
            f"after temperature scaling (T = {temperature:.2f})",
        ),
        figsize=(11, 6.2),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".png", delete=False) as file:
        figure.savefig(file, format="png", dpi=110)
    os.replace(file.name, target)
    os.chmod(target, 0o644)
    print(f"wrote {target}")
    return {"fitted_temperature": temperature, **results}


if __name__ == "__main__":
    main(sys.argv[1:])
