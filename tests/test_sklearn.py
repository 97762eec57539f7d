"""softmaxkit.sklearn.TemperatureScaling: scikit-learn's conventions and checks, Pipeline,
cross_val_score, and agreement with the formulas written here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
special = pytest.importorskip("scipy.special")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import softmaxkit as smk  # noqa: E402
from softmaxkit.sklearn import TemperatureScaling  # noqa: E402

# The checks that feed arbitrary features: X must hold one column of logits per class.
_NOT_LOGITS = (
    "the check's X has fewer columns than y has classes; X must hold one column of logits "
    "per class"
)
EXPECTED_FAILED_CHECKS = {
    "check_estimators_overwrite_params": _NOT_LOGITS,
    "check_estimators_fit_returns_self": _NOT_LOGITS,
    "check_readonly_memmap_input": _NOT_LOGITS,
    "check_classifiers_classes": _NOT_LOGITS,
    "check_classifiers_train": _NOT_LOGITS,
    "check_classifiers_one_label": (
        "one label is a valid calibration set; the predictions stay the arg max of the "
        "logits, not the single label seen in fit"
    ),
}


# The checks fit random features, which carry no information on their labels.
@pytest.mark.filterwarnings("ignore::softmaxkit.calibration.CalibrationWarning")
@parametrize_with_checks(
    [TemperatureScaling()], expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def over_confident(rng, n=600, k=4, scale=5.0):
    y = rng.integers(0, k, size=n)
    return scale * (rng.normal(size=(n, k)) + 1.3 * np.eye(k)[y]), y


def test_fit_and_every_method_against_the_formulas():
    rng = np.random.default_rng(0)
    logits, y = over_confident(rng)
    model = TemperatureScaling().fit(logits, y)
    t = smk.fit_temperature(logits, y)
    assert model.temperature_ == t
    np.testing.assert_array_equal(model.classes_, np.arange(4))
    assert model.n_features_in_ == 4
    np.testing.assert_allclose(model.transform(logits), logits / t, rtol=1e-15)
    np.testing.assert_allclose(model.decision_function(logits), logits / t, rtol=1e-15)
    np.testing.assert_allclose(
        model.predict_proba(logits), special.softmax(logits / t, axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        model.predict_log_proba(logits), special.log_softmax(logits / t, axis=1), rtol=1e-12
    )
    np.testing.assert_array_equal(model.predict(logits), logits.argmax(axis=1))
    log_p = special.log_softmax(logits / t, axis=1)[np.arange(len(y)), y]
    assert model.score(logits, y) == pytest.approx(log_p.mean(), rel=1e-12)
    weight = rng.uniform(size=len(y))
    assert model.score(logits, y, sample_weight=weight) == pytest.approx(
        np.dot(weight, log_p) / weight.sum(), rel=1e-12
    )


def test_string_labels_follow_the_sorted_classes():
    rng = np.random.default_rng(1)
    logits, y = over_confident(rng, k=3)
    names = np.array(["cat", "dog", "emu"])
    model = TemperatureScaling().fit(logits, names[y])
    np.testing.assert_array_equal(model.classes_, names)
    assert model.temperature_ == smk.fit_temperature(logits, y)
    np.testing.assert_array_equal(model.predict(logits), names[logits.argmax(axis=1)])
    assert model.score(logits, names[y]) == TemperatureScaling().fit(logits, y).score(logits, y)
    with pytest.raises(ValueError, match="not seen in fit"):
        model.score(logits[:2], ["cat", "yak"])


def test_column_indices_with_classes_missing_from_y():
    rng = np.random.default_rng(2)
    logits, y = over_confident(rng, k=5)
    kept = y < 4  # class 4 never occurs
    model = TemperatureScaling().fit(logits[kept], y[kept])
    np.testing.assert_array_equal(model.classes_, np.arange(5))
    assert model.temperature_ == smk.fit_temperature(logits[kept], y[kept])
    with pytest.raises(ValueError, match="one column of logits per class"):
        TemperatureScaling().fit(logits[:, :3], y)
    with pytest.raises(ValueError, match="at least 2"):
        TemperatureScaling().fit(logits[:, :1], np.zeros(len(y), dtype=int))


def test_binary_decision_function_is_the_log_odds():
    rng = np.random.default_rng(3)
    logits, y = over_confident(rng, k=2)
    model = TemperatureScaling().fit(logits, y)
    t = model.temperature_
    np.testing.assert_allclose(model.decision_function(logits), (logits[:, 1] - logits[:, 0]) / t)


def test_unfitted_and_sample_weight():
    rng = np.random.default_rng(4)
    logits, y = over_confident(rng, n=200)
    with pytest.raises(NotFittedError):
        TemperatureScaling().predict_proba(logits)
    counts = rng.integers(0, 3, size=200)
    weighted = TemperatureScaling().fit(logits, y, sample_weight=counts)
    repeated = TemperatureScaling().fit(np.repeat(logits, counts, 0), np.repeat(y, counts))
    assert weighted.temperature_ == pytest.approx(repeated.temperature_, rel=1e-10)
    with pytest.warns(smk.CalibrationWarning, match="above the upper bound"):
        assert TemperatureScaling(bounds=(0.5, 2.0)).fit(logits, y).temperature_ == 2.0
    assert clone(weighted).get_params() == {"bounds": (1e-2, 1e2)}
    assert not hasattr(clone(weighted), "temperature_")


def test_pipeline_fits_the_logits_it_is_given():
    rng = np.random.default_rng(5)
    logits, y = over_confident(rng)
    tripled = make_pipeline(FunctionTransformer(lambda z: 3.0 * z), TemperatureScaling())
    tripled.fit(logits, y)
    direct = TemperatureScaling().fit(logits, y)
    assert tripled[-1].temperature_ == pytest.approx(3.0 * direct.temperature_, rel=1e-10)
    np.testing.assert_allclose(tripled.predict_proba(logits), direct.predict_proba(logits))
    # As a transformer inside a pipeline: the calibrated logits go on to the next step.
    chained = Pipeline(
        [("calibrate", TemperatureScaling()), ("probabilities", FunctionTransformer(smk.softmax))]
    )
    np.testing.assert_allclose(chained.fit(logits, y).transform(logits), direct.predict_proba(
        logits))


@pytest.mark.filterwarnings("ignore:the optimal temperature lies above the upper bound")
def test_cross_val_score_compares_calibrations():
    rng = np.random.default_rng(6)
    logits, y = over_confident(rng)
    folds = KFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(TemperatureScaling(), logits, y, cv=folds)
    by_hand = []
    for train, test in folds.split(logits):
        t = smk.fit_temperature(logits[train], y[train])
        log_p = special.log_softmax(logits[test] / t, axis=1)
        by_hand.append(log_p[np.arange(len(test)), y[test]].mean())
    np.testing.assert_allclose(scores, by_hand, rtol=1e-12)
    uncalibrated = np.mean(
        [special.log_softmax(logits[test], axis=1)[np.arange(len(test)), y[test]].mean()
         for _, test in folds.split(logits)]
    )
    assert scores.mean() > uncalibrated  # greater is better, and calibration helps
    search = GridSearchCV(TemperatureScaling(), {"bounds": [(0.01, 1.0), (0.01, 100.0)]}, cv=3)
    assert search.fit(logits, y).best_params_ == {"bounds": (0.01, 100.0)}


def test_import_softmaxkit_does_not_import_sklearn():
    code = "import sys, softmaxkit; print('sklearn' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "False"
