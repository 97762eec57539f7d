"""Calibration metrics and the reliability diagram (softmaxkit.calibration).

Every metric is compared with its formula written here with plain NumPy loops
(bins as explicit intervals), on probabilities and on logits, with weights and soft
labels, and on every array library.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit.calibration import (
    brier_score,
    classwise_ece,
    expected_calibration_error,
    negative_log_likelihood,
)


def random_probabilities(rng, n=500, k=5, sharpness=3.0):
    logits = sharpness * rng.normal(size=(n, k))
    labels = rng.integers(0, k, size=n)
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits, probs / probs.sum(axis=1, keepdims=True), labels


# --- the formulas, written here -------------------------------------------------------------


def direct_errors(confidence, correct, n_bins, weight=None):
    """(ECE, RMS, MCE) over the uniform bins [0, 1/M], (1/M, 2/M], ..., by a loop."""
    weight = np.ones_like(confidence) if weight is None else weight
    total = weight.sum()
    ece = squares = 0.0
    largest = 0.0
    for m in range(n_bins):
        low, high = m / n_bins, (m + 1) / n_bins
        inside = (confidence > low) & (confidence <= high)
        if m == 0:
            inside |= confidence == 0
        if not weight[inside].sum() > 0:
            continue
        w = weight[inside]
        gap = abs(np.sum(w * correct[inside]) / w.sum() - np.sum(w * confidence[inside]) / w.sum())
        ece += w.sum() / total * gap
        squares += w.sum() / total * gap**2
        largest = max(largest, gap)
    return ece, math.sqrt(squares), largest


def test_ece_rms_and_mce_match_the_formula():
    rng = np.random.default_rng(0)
    _, probs, labels = random_probabilities(rng)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    for n_bins in (1, 10, 15, 37):
        ece, rms, mce = direct_errors(confidence, correct, n_bins)
        assert expected_calibration_error(probs, labels, n_bins=n_bins) == (
            pytest.approx(ece, abs=1e-14)
        )
        assert expected_calibration_error(probs, labels, n_bins=n_bins, norm="l2") == (
            pytest.approx(rms, abs=1e-14)
        )
        assert expected_calibration_error(probs, labels, n_bins=n_bins, norm="max") == (
            pytest.approx(mce, abs=1e-14)
        )


def test_ece_with_weights_is_ece_of_repeated_samples():
    rng = np.random.default_rng(1)
    _, probs, labels = random_probabilities(rng, n=200)
    counts = rng.integers(0, 4, size=200)
    for norm in ("l1", "l2", "max"):
        for strategy in ("uniform", "quantile"):
            weighted = expected_calibration_error(
                probs, labels, weight=counts, norm=norm, strategy=strategy, n_bins=8
            )
            repeated = expected_calibration_error(
                np.repeat(probs, counts, 0), np.repeat(labels, counts), norm=norm,
                strategy=strategy, n_bins=8,
            )
            assert weighted == pytest.approx(repeated, abs=1e-14)


def test_bins_are_closed_on_the_right():
    # Four bins with exact edges: 0.5 and 0.75 fall in the bins they close.
    probs = np.array([[0.5, 0.5], [0.75, 0.25], [1.0, 0.0], [0.625, 0.375]])
    labels = np.array([0, 1, 0, 0])
    # bins: (0.25, 0.5] holds 0.5 (right), (0.5, 0.75] holds 0.75 (wrong) and 0.625 (right),
    # (0.75, 1] holds 1.0 (right)
    expected = 0.25 * 0.5 + 0.5 * abs(0.5 - 0.6875) + 0.25 * 0.0
    assert expected_calibration_error(probs, labels, n_bins=4) == pytest.approx(expected)


def test_quantile_bins_hold_equal_numbers_of_samples():
    rng = np.random.default_rng(2)
    _, probs, labels = random_probabilities(rng, n=600)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(confidence)
    for n_bins in (1, 4, 10, 15):
        groups = np.array_split(order, n_bins)  # 600 / n_bins each
        gaps = [abs(correct[g].mean() - confidence[g].mean()) for g in groups]
        got = expected_calibration_error(probs, labels, n_bins=n_bins, strategy="quantile")
        assert got == pytest.approx(np.mean(gaps), abs=1e-14)
        got_max = expected_calibration_error(
            probs, labels, n_bins=n_bins, strategy="quantile", norm="max"
        )
        assert got_max == pytest.approx(np.max(gaps), abs=1e-14)


def test_classwise_ece_matches_the_formula():
    rng = np.random.default_rng(3)
    _, probs, labels = random_probabilities(rng, n=400, k=4)
    onehot = np.eye(4)[labels]
    per_class = [direct_errors(probs[:, k], onehot[:, k], 10)[0] for k in range(4)]
    assert classwise_ece(probs, labels, n_bins=10) == pytest.approx(np.mean(per_class), abs=1e-14)
    per_class_max = [direct_errors(probs[:, k], onehot[:, k], 10)[2] for k in range(4)]
    assert classwise_ece(probs, labels, n_bins=10, norm="max") == pytest.approx(
        np.mean(per_class_max), abs=1e-14
    )


def test_brier_and_nll_match_the_formulas():
    rng = np.random.default_rng(4)
    logits, probs, labels = random_probabilities(rng, n=300, k=6)
    onehot = np.eye(6)[labels]
    assert brier_score(probs, labels) == pytest.approx(
        np.mean(np.sum((probs - onehot) ** 2, axis=1)), rel=1e-13
    )
    assert negative_log_likelihood(probs, labels) == pytest.approx(
        -np.mean(np.log(probs[np.arange(300), labels])), rel=1e-12
    )
    # From logits: the log-softmax of the logits in long double, not log of a probability.
    z = logits.astype(np.longdouble)
    top = z.max(axis=1, keepdims=True)
    log_p = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
    assert negative_log_likelihood(logits, labels, from_logits=True) == pytest.approx(
        float(-np.mean(log_p[np.arange(300), labels])), rel=1e-14
    )
    soft = rng.dirichlet(np.ones(6), size=300)
    assert negative_log_likelihood(probs, soft) == pytest.approx(
        -np.mean(np.sum(soft * np.log(probs), axis=1)), rel=1e-12
    )
    assert brier_score(probs, soft) == pytest.approx(
        np.mean(np.sum((probs - soft) ** 2, axis=1)), rel=1e-13
    )


def test_soft_labels_generalise_the_one_hot_case():
    rng = np.random.default_rng(5)
    logits, probs, labels = random_probabilities(rng, n=200, k=3)
    onehot = np.eye(3)[labels]
    for metric in (expected_calibration_error, classwise_ece, brier_score, negative_log_likelihood):
        assert metric(probs, onehot) == pytest.approx(metric(probs, labels), abs=1e-14)
    soft = rng.dirichlet(np.ones(3), size=200)
    confidence = probs.max(axis=1)
    outcome = soft[np.arange(200), probs.argmax(axis=1)]  # P(the prediction is right)
    assert expected_calibration_error(probs, soft, n_bins=5) == pytest.approx(
        direct_errors(confidence, outcome, 5)[0], abs=1e-14
    )


def test_from_logits_is_softmax_first():
    rng = np.random.default_rng(6)
    logits, _, labels = random_probabilities(rng, n=300, k=4)
    probs = smk.softmax(logits)
    for metric in (expected_calibration_error, classwise_ece, brier_score):
        assert metric(logits, labels, from_logits=True) == pytest.approx(
            metric(probs, labels), abs=1e-14
        )
    # A -inf logit has probability 0: the NLL of a label there is infinite, not NaN.
    assert negative_log_likelihood([[0.0, -np.inf]], [1], from_logits=True) == math.inf
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == math.inf


def test_axis_and_leading_dimensions():
    rng = np.random.default_rng(7)
    _, probs, labels = random_probabilities(rng, n=60, k=3)
    cube = probs.reshape(6, 10, 3).transpose(2, 0, 1)
    for metric in (expected_calibration_error, classwise_ece, brier_score, negative_log_likelihood):
        assert metric(cube, labels.reshape(6, 10), axis=0) == pytest.approx(
            metric(probs, labels), abs=1e-14
        )


@pytest.mark.allow_dask_compute  # the result is a Python float
def test_metrics_on_every_backend(backend):
    rng = np.random.default_rng(8)
    logits, probs, labels = random_probabilities(rng, n=100, k=3)
    for metric in (expected_calibration_error, classwise_ece, brier_score, negative_log_likelihood):
        expected = metric(probs, labels)
        got = metric(backend.asarray(probs), backend.asarray(labels))
        assert type(got) is float and got == expected
        assert metric(backend.asarray(logits), backend.asarray(labels), from_logits=True) == (
            pytest.approx(metric(logits, labels, from_logits=True), abs=1e-15)
        )


def test_float32_probabilities_pass_the_sum_check():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(50, 32000)).astype(np.float32) * 5
    probs = smk.softmax(logits)
    labels = rng.integers(0, 32000, size=50)
    assert brier_score(probs, labels) == pytest.approx(
        brier_score(probs.astype(np.float64), labels)
    )


@pytest.mark.parametrize(
    "scores, labels, options, error, match",
    [
        ([[0.5, 0.6]], [0], {}, ValueError, r"must sum to 1 \(within 0.0001\).*from_logits=True"),
        ([[1.5, -0.5]], [0], {}, ValueError, r"probabilities in \[0, 1\].*from_logits=True"),
        ([[float("nan"), 1.0]], [0], {}, ValueError, r"probabilities in \[0, 1\]"),
        ([[float("nan"), 1.0]], [0], {"from_logits": True}, ValueError, "finite or -inf"),
        ([[0.5, 0.5]], [2], {}, ValueError, r"class indices in \[0, 2\)"),
        ([[0.5, 0.5]], [0, 1], {}, ValueError, "labels of integer dtype"),
        ([[0.5, 0.5]], [0.0], {}, ValueError, "class indices need an integer dtype"),
        ([[0.5, 0.5]], [0], {"from_logits": 1}, TypeError, "from_logits must be True or False"),
        ([[0.5, 0.5]], [0], {"n_bins": 0}, ValueError, "n_bins must be >= 1"),
        ([[0.5, 0.5]], [0], {"n_bins": 2.5}, TypeError, "n_bins must be an int"),
        ([[0.5, 0.5]], [0], {"strategy": "equal"}, ValueError, "strategy must be one of"),
        ([[0.5, 0.5]], [0], {"norm": "l3"}, ValueError, "norm must be one of"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), {}, ValueError, "is empty"),
        ([[0.5, 0.5]], [0], {"weight": [-1.0]}, ValueError, "weight must be finite and >= 0"),
    ],
)
def test_bad_input_is_refused(scores, labels, options, error, match):
    with pytest.raises(error, match=match):
        expected_calibration_error(np.asarray(scores), np.asarray(labels), **options)


def test_probabilities_are_never_guessed_to_be_logits():
    logits = np.array([[2.0, -1.0, 0.5]])
    for metric in (expected_calibration_error, classwise_ece, brier_score, negative_log_likelihood):
        with pytest.raises(ValueError, match="from_logits=True"):
            metric(logits, [0])


# --- the reliability diagram ------------------------------------------------------------------


matplotlib = pytest.importorskip("matplotlib")


def test_reliability_diagram_draws_accuracy_per_bin_and_the_counts():
    rng = np.random.default_rng(10)
    logits, probs, labels = random_probabilities(rng, n=400, k=3, sharpness=4.0)
    t = smk.fit_temperature(logits, labels)
    figure = smk.reliability_diagram(
        logits, labels, from_logits=True, calibrated=logits / t, n_bins=10
    )
    assert smk.plot.reliability_diagram is smk.reliability_diagram
    before, after, before_counts, after_counts = figure.axes
    assert before.get_title() == "before calibration"
    assert after.get_title() == "after calibration"
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    heights = {}
    for m in range(10):
        inside = (confidence > m / 10) & (confidence <= (m + 1) / 10)
        if inside.any():
            heights[round(m / 10, 6)] = correct[inside].mean()
    drawn = {
        round(p.get_x(), 6): p.get_height()
        for p in before.containers[0].patches
    }
    assert drawn.keys() == heights.keys()
    for left, height in heights.items():
        assert drawn[left] == pytest.approx(height)
    assert before.containers[0].get_label() == "accuracy"
    shares = [p.get_height() for p in before_counts.containers[0].patches]
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 11))[0]
    np.testing.assert_allclose(shares, 100 * counts / counts.sum(), atol=1e-9)
    ece = smk.expected_calibration_error(logits, labels, from_logits=True, n_bins=10)
    texts = [t.get_text() for t in before.get_legend().get_texts()]
    assert f"ECE = {100 * ece:.2f}%" in texts
    calibrated_ece = smk.expected_calibration_error(
        logits / t, labels, from_logits=True, n_bins=10
    )
    assert f"ECE = {100 * calibrated_ece:.2f}%" in [
        t.get_text() for t in after.get_legend().get_texts()
    ]
    assert after_counts.get_xlabel() == "confidence (top probability)"


def test_reliability_diagram_into_given_axes():
    from matplotlib.figure import Figure

    rng = np.random.default_rng(11)
    _, probs, labels = random_probabilities(rng, n=200, k=3)
    figure = Figure()
    axes = figure.subplots(1, 2)
    assert smk.reliability_diagram(probs, labels, calibrated=probs, ax=axes) is figure
    assert len(figure.axes) == 4  # a histogram carved under each
    single = Figure().subplots()
    smk.reliability_diagram(probs, labels, ax=single, titles=("mine",))
    assert single.get_title() == "mine"
    with pytest.raises(ValueError, match="ax must hold 2 axes"):
        smk.reliability_diagram(probs, labels, calibrated=probs, ax=single)
    with pytest.raises(ValueError, match="from_logits=True"):
        smk.reliability_diagram(np.log(probs), labels)
