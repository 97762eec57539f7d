"""Temperature, vector and matrix scaling (softmaxkit.calibration).

The fitted temperature is compared with SciPy's scalar minimiser on the NLL written
here in long double, and with the root of the derivative written here; the derivatives
with finite differences; vector and matrix scaling with ``scipy.optimize.minimize`` on
the objective written here, and with the known parameters of data drawn from a known
affine miscalibration.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _kernels
from softmaxkit.calibration import CalibrationWarning, MatrixScaling, VectorScaling
from softmaxkit.calibration._inputs import labelled
from softmaxkit.calibration._temperature import TemperatureProblem

scipy_optimize = pytest.importorskip("scipy.optimize")
scipy_special = pytest.importorskip("scipy.special")


# --- references written here --------------------------------------------------------------


def reference_nll(logits, labels, temperature, weight=None):
    """The mean NLL of softmax(logits / T) in long double (class indices or probabilities)."""
    z = np.asarray(logits, dtype=np.longdouble) / np.longdouble(temperature)
    top = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    labels = np.asarray(labels)
    if labels.ndim == 1:
        picked = z[np.arange(len(labels)), labels]
    else:
        picked = (np.asarray(labels, dtype=np.longdouble) * z).sum(axis=1)
    terms = lse - picked
    w = np.ones(len(terms), dtype=np.longdouble) if weight is None else np.asarray(
        weight, dtype=np.longdouble
    )
    return (w * terms).sum() / w.sum()


def reference_slope(beta, logits, labels):
    """d NLL / d beta = mean(E_p[z] - z_y), with p = softmax(beta z), in long double."""
    z = np.asarray(logits, dtype=np.longdouble)
    scaled = beta * z
    p = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return float(np.mean((p * z).sum(axis=1) - z[np.arange(len(labels)), labels]))


def reference_temperature(logits, labels, start, weight=None):
    """Brent's method on log T over the long-double NLL (SciPy's minimize_scalar)."""
    result = scipy_optimize.minimize_scalar(
        lambda log_t: reference_nll(logits, labels, np.exp(log_t), weight),
        bracket=(math.log(start) - 0.5, math.log(start) + 0.5),
        method="brent",
        tol=1e-13,
    )
    return float(np.exp(result.x))


def random_problem(rng, *, n=None, k=None):
    n = int(rng.integers(20, 400)) if n is None else n
    k = int(rng.integers(2, 30)) if k is None else k
    labels = rng.integers(0, k, size=n)
    scale = rng.uniform(0.3, 8.0)
    logits = scale * (rng.normal(size=(n, k)) + rng.uniform(0.5, 3.0) * np.eye(k)[labels])
    logits += rng.normal(size=(n, 1)) * 50  # a per-row offset changes nothing
    return logits, labels


# --- fit_temperature ----------------------------------------------------------------------


def test_fit_temperature_matches_scipy_minimize_scalar_on_many_problems():
    rng = np.random.default_rng(20170614)
    checked = 0
    for _ in range(40):
        logits, labels = random_problem(rng)
        fitted = smk.fit_temperature(logits, labels, bounds=(1e-3, 1e3))
        reference = reference_temperature(logits, labels, fitted * rng.uniform(0.7, 1.4))
        assert fitted == pytest.approx(reference, rel=1e-8)
        checked += 1
    assert checked == 40


def test_fit_temperature_is_the_root_of_the_derivative_written_here():
    rng = np.random.default_rng(1)
    for _ in range(10):
        logits, labels = random_problem(rng, n=200, k=7)
        fitted = smk.fit_temperature(logits, labels, bounds=(1e-3, 1e3))
        beta = scipy_optimize.brentq(
            reference_slope, 1e-3, 1e3, args=(logits, labels), xtol=1e-15, rtol=1e-15
        )
        assert fitted == pytest.approx(1 / beta, rel=1e-10)


def test_newton_converges_in_few_steps(monkeypatch):
    # The root often lies where a converged Newton step rounds onto the end of the
    # bracket: that is convergence, not a reason to bisect (which took up to 50 steps).
    steps = []
    evaluate = TemperatureProblem.evaluate

    def counted(self, beta, **options):
        steps.append(beta)
        return evaluate(self, beta, **options)

    monkeypatch.setattr(TemperatureProblem, "evaluate", counted)
    rng = np.random.default_rng(14)
    counts = []
    for _ in range(100):
        logits, labels = random_problem(rng)
        steps.clear()
        smk.fit_temperature(logits, labels, bounds=(1e-3, 1e3))
        counts.append(len(steps))
    assert max(counts) <= 16  # two at the bounds, then Newton's quadratic convergence
    assert np.mean(counts) <= 11


def test_closed_form_optimum():
    # Three right with logit a against 0, 0 and one wrong: exp(a / T) = 6 at the optimum.
    for a in (0.5, 4.0, 40.0):
        logits = a * np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
        fitted = smk.fit_temperature(logits, [0, 1, 2, 1], bounds=(1e-3, 1e3))
        assert fitted == pytest.approx(a / math.log(6), rel=1e-12)


def _problem(logits, labels, **options):
    return TemperatureProblem(labelled(logits, labels, axis=-1, ignore_index=-100, **options))


@pytest.mark.parametrize("beta", [0.05, 0.4, 1.0, 3.0])
def test_derivatives_against_finite_differences(beta):
    rng = np.random.default_rng(7)
    logits, labels = random_problem(rng, n=300, k=12)
    problem = _problem(logits, labels)
    loss, slope, curvature = problem.evaluate(beta)
    assert loss == pytest.approx(float(reference_nll(logits, labels, 1 / beta)), rel=1e-13)
    h = 1e-5 * beta
    up, down = problem.evaluate(beta + h), problem.evaluate(beta - h)
    assert slope == pytest.approx((up[0] - down[0]) / (2 * h), rel=1e-6, abs=1e-9)
    assert curvature == pytest.approx((up[1] - down[1]) / (2 * h), rel=1e-6, abs=1e-9)
    assert slope == pytest.approx(reference_slope(beta, logits, labels), rel=1e-12, abs=1e-14)


def test_derivatives_with_soft_labels_and_masked_classes():
    rng = np.random.default_rng(8)
    logits, _ = random_problem(rng, n=100, k=6)
    logits[:, 5] = -np.inf  # a class that never takes part
    soft = rng.dirichlet(np.ones(5), size=100)
    soft = np.concatenate([soft, np.zeros((100, 1))], axis=1)
    problem = _problem(logits, soft)
    for beta in (0.1, 1.0, 5.0):
        loss, slope, curvature = problem.evaluate(beta)
        finite = logits[:, :5]
        assert loss == pytest.approx(
            float(reference_nll(finite, soft[:, :5], 1 / beta)), rel=1e-13
        )
        h = 1e-5 * beta
        up, down = problem.evaluate(beta + h), problem.evaluate(beta - h)
        assert slope == pytest.approx((up[0] - down[0]) / (2 * h), rel=1e-6, abs=1e-9)
        assert curvature == pytest.approx((up[1] - down[1]) / (2 * h), rel=1e-6, abs=1e-9)


def test_soft_labels_match_scipy_and_one_hot_labels_match_indices():
    rng = np.random.default_rng(3)
    logits, labels = random_problem(rng, n=250, k=5)
    one_hot = np.eye(5)[labels]
    assert smk.fit_temperature(logits, one_hot) == pytest.approx(
        smk.fit_temperature(logits, labels), rel=1e-12
    )
    soft = 0.8 * one_hot + 0.2 * rng.dirichlet(np.ones(5), size=250)
    fitted = smk.fit_temperature(logits, soft)
    assert fitted == pytest.approx(reference_temperature(logits, soft, fitted), rel=1e-8)


def test_weights_are_repeated_samples_and_ignored_labels_are_deleted():
    rng = np.random.default_rng(4)
    logits, labels = random_problem(rng, n=120, k=4)
    counts = rng.integers(0, 4, size=120)
    weighted = smk.fit_temperature(logits, labels, weight=counts)
    repeated = smk.fit_temperature(np.repeat(logits, counts, 0), np.repeat(labels, counts))
    assert weighted == pytest.approx(repeated, rel=1e-10)
    ignored = np.where(counts == 0, -100, labels)
    kept = counts > 0
    assert smk.fit_temperature(logits, ignored) == pytest.approx(
        smk.fit_temperature(logits[kept], labels[kept]), rel=1e-12
    )
    assert smk.fit_temperature(logits, np.where(kept, labels, 7), ignore_index=7) == (
        pytest.approx(smk.fit_temperature(logits[kept], labels[kept]), rel=1e-12)
    )


def test_masked_classes_are_deleted():
    rng = np.random.default_rng(5)
    logits, labels = random_problem(rng, n=100, k=6)
    labels = labels % 4
    masked = logits.copy()
    masked[:, 4:] = -np.inf
    assert smk.fit_temperature(masked, labels) == pytest.approx(
        smk.fit_temperature(logits[:, :4], labels), rel=1e-12
    )


def test_class_axis_and_leading_dimensions():
    rng = np.random.default_rng(6)
    logits, labels = random_problem(rng, n=60, k=5)
    expected = smk.fit_temperature(logits, labels)
    assert smk.fit_temperature(logits.T, labels, axis=0) == pytest.approx(expected, rel=1e-12)
    cube = logits.reshape(6, 10, 5).transpose(0, 2, 1)  # classes on axis 1
    assert smk.fit_temperature(cube, labels.reshape(6, 10), axis=1) == pytest.approx(
        expected, rel=1e-12
    )


def test_temperature_keeps_every_prediction_and_the_accuracy():
    rng = np.random.default_rng(9)
    logits, labels = random_problem(rng, n=500, k=10)
    t = smk.fit_temperature(logits, labels)
    calibrated = smk.softmax(logits, temperature=t)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), logits.argmax(axis=1))
    accuracy = np.mean(logits.argmax(axis=1) == labels)
    assert np.mean(calibrated.argmax(axis=1) == labels) == accuracy
    # And it does what it is for: the NLL at T is the least of T and its neighbours.
    nll = [float(reference_nll(logits, labels, t * f)) for f in (0.99, 1.0, 1.01)]
    assert nll[1] < nll[0] and nll[1] < nll[2]


def test_kernel_and_generic_paths_agree(monkeypatch):
    rng = np.random.default_rng(10)
    logits, labels = random_problem(rng, n=300, k=9)
    if not _kernels.kernel_available():
        pytest.skip("the compiled kernel is not built")
    calls = []
    original = _kernels.softmax_stats

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result is not NotImplemented)
        return result

    monkeypatch.setattr(_kernels, "softmax_stats", spy)
    with_kernel = smk.fit_temperature(logits, labels)
    assert calls and all(calls)  # every step took the fused kernel
    assert len(calls) < 30
    with _kernels.generic_only():
        generic = smk.fit_temperature(logits, labels)
    assert generic == pytest.approx(with_kernel, rel=1e-11)


def test_blocks_of_rows_give_the_same_fit(monkeypatch):
    from softmaxkit.calibration import _temperature

    rng = np.random.default_rng(13)
    logits, labels = random_problem(rng, n=301, k=7)
    logits[::5, 6] = -np.inf
    labels = labels % 6
    soft = np.eye(7)[labels] * 0.7 + 0.3 * np.concatenate(
        [rng.dirichlet(np.ones(6), size=301), np.zeros((301, 1))], axis=1
    )
    whole = [smk.fit_temperature(logits, labels), smk.fit_temperature(logits, soft)]
    monkeypatch.setattr(_temperature, "_BLOCK_ENTRIES", 40)  # blocks of 5 rows
    assert _problem(logits, labels)._step == 5
    blocked = [smk.fit_temperature(logits, labels), smk.fit_temperature(logits, soft)]
    assert blocked == pytest.approx(whole, rel=1e-13)
    with pytest.raises(ValueError, match="row 300 gives probability to a class"):
        bad = soft.copy()
        bad[300] = [0, 0, 0, 0, 0, 0.5, 0.5]
        logits[300, 6] = -np.inf
        smk.fit_temperature(logits, bad)


@pytest.mark.allow_dask_compute  # the result is a Python float
def test_result_is_a_python_float_on_every_backend(backend):
    rng = np.random.default_rng(11)
    logits, labels = random_problem(rng, n=80, k=4)
    expected = smk.fit_temperature(logits, labels)
    fitted = smk.fit_temperature(backend.asarray(logits), backend.asarray(labels))
    assert type(fitted) is float
    assert fitted == expected
    weight = rng.uniform(size=80)
    assert smk.fit_temperature(
        backend.asarray(logits), backend.asarray(labels), weight=backend.asarray(weight)
    ) == smk.fit_temperature(logits, labels, weight=weight)


def test_float32_and_torch_autograd_inputs():
    rng = np.random.default_rng(12)
    logits, labels = random_problem(rng, n=80, k=4)
    single = logits.astype(np.float32)
    assert smk.fit_temperature(single, labels) == smk.fit_temperature(
        single.astype(np.float64), labels
    )
    torch = pytest.importorskip("torch")
    tensor = torch.tensor(single, requires_grad=True)
    assert smk.fit_temperature(tensor, torch.tensor(labels)) == smk.fit_temperature(
        single, labels
    )


# --- fit_temperature at the edges -------------------------------------------------------------


def test_separated_logits_give_the_lower_bound_with_a_warning():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [5.0, 1.0]])
    with pytest.warns(CalibrationWarning, match="separate the labels perfectly"):
        assert smk.fit_temperature(logits, [0, 1, 0], bounds=(0.05, 20.0)) == 0.05
    # A tie at the maximum still has its label at the maximum: the same limit.
    with pytest.warns(CalibrationWarning, match="T -> 0"):
        assert smk.fit_temperature([[1.0, 1.0, 0.0]], [0]) == 0.01


def test_uninformative_logits_give_the_upper_bound_with_a_warning():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [5.0, 1.0]])
    with pytest.warns(CalibrationWarning, match="no information"):
        assert smk.fit_temperature(logits, [1, 0, 1]) == 100.0
    assert issubclass(CalibrationWarning, UserWarning)


def test_optimum_beyond_a_bound_warns_and_returns_it():
    logits = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0], [4.0, 0, 0]])
    optimum = 4 / math.log(6)
    with pytest.warns(CalibrationWarning, match="below the lower bound"):
        assert smk.fit_temperature(logits, [0, 1, 2, 1], bounds=(3.0, 10.0)) == 3.0
    with pytest.warns(CalibrationWarning, match="above the upper bound"):
        assert smk.fit_temperature(logits, [0, 1, 2, 1], bounds=(0.1, 1.0)) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert smk.fit_temperature(logits, [0, 1, 2, 1], bounds=(2.0, 2.5)) == pytest.approx(
            optimum, rel=1e-10
        )


@pytest.mark.parametrize(
    "logits, labels, options, match",
    [
        ([[1.0, 2.0], [0.0, 1.0]], [0, 2], {}, r"labels must hold class indices in \[0, 2\)"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, -1], {}, "labels must hold class indices"),
        ([[1.0, float("nan")], [0.0, 1.0]], [0, 1], {}, "logits must be finite or -inf"),
        ([[1.0, float("inf")], [0.0, 1.0]], [0, 1], {}, "logits must be finite or -inf"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), {}, "logits is empty"),
        ([[1.0, 2.0], [0.0, 1.0]], [-100, -100], {}, "every label is ignored"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"weight": [0.0, 0.0]}, "weight 0"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"weight": [1.0, -1.0]}, "weight must be finite"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"weight": [1.0]}, "weight must have one entry"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"bounds": (0.0, 1.0)}, "bounds must satisfy"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"bounds": (2.0, 1.0)}, "bounds must satisfy"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"bounds": (1.0, math.inf)}, "bounds must satisfy"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"bounds": (math.nan, 1.0)}, "bounds must satisfy"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"bounds": "ab"}, "bounds must be a pair"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1], {"bounds": (1.0,)}, "bounds must be a pair"),
        ([[1.0, 2.0], [0.0, 1.0]], [0.0, 1.0], {}, "class indices need an integer dtype"),
        ([[1.0, 2.0], [0.0, 1.0]], [0, 1, 1], {}, "labels of integer dtype"),
        ([[1.0, 2.0], [0.0, 1.0]], [[0.5, 0.6], [0.0, 1.0]], {}, "must sum to 1"),
        ([[1.0, 2.0], [0.0, 1.0]], [[1.5, -0.5], [0.0, 1.0]], {}, r"in \[0, 1\]"),
        ([[1.0, float("-inf")], [0.0, 1.0]], [1, 1], {}, "logit -inf"),
        ([[1.0, float("-inf")], [0.0, 1.0]], [[0.5, 0.5], [0, 1]], {}, "logit is -inf"),
        ([[1.0, 1.0], [2.0, 2.0]], [0, 1], {}, "every row is constant"),
        ([[1.0], [2.0]], [0, 0], {}, "at least 2 classes"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_argument(logits, labels, options, match):
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    with pytest.raises(ValueError, match=match):
        smk.fit_temperature(logits, labels, **options)


def test_type_errors():
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        smk.fit_temperature([[1.0, 2.0]], [0], ignore_index=1.5)
    with pytest.raises(TypeError, match="axis must be a single int"):
        smk.fit_temperature([[1.0, 2.0]], [0], axis=(0, 1))
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        smk.fit_temperature([[1.0, 2.0]], np.array(["a"]))
    with pytest.raises(TypeError, match="logits must be real"):
        smk.fit_temperature(np.array([[1j, 2.0]]), [0])


# --- vector and matrix scaling --------------------------------------------------------------


def _direct_minimize(logits, labels, kind, l2_off=0.0, l2_bias=0.0):
    """The same objective written here, minimised by SciPy's BFGS from the identity."""
    n, k = logits.shape
    onehot = np.eye(k)[labels]

    def unpack(theta):
        if kind == "vector":
            return theta[:k], theta[k:]
        return theta[: k * k].reshape(k, k), theta[k * k :]

    def scores(theta):
        first, bias = unpack(theta)
        return (logits * first if kind == "vector" else logits @ first.T) + bias

    def objective(theta):
        log_p = scipy_special.log_softmax(scores(theta), axis=1)
        loss = -np.mean(np.sum(onehot * log_p, axis=1))
        residual = (np.exp(log_p) - onehot) / n
        first, bias = unpack(theta)
        if kind == "vector":
            grad_first = np.sum(residual * logits, axis=0)
        else:
            grad_first = (residual.T @ logits).ravel()
            off = first * (1 - np.eye(k))
            loss += l2_off * np.sum(off**2)
            grad_first = grad_first + 2 * l2_off * off.ravel()
        loss += l2_bias * np.sum(bias**2)
        return loss, np.concatenate([grad_first, residual.sum(axis=0) + 2 * l2_bias * bias])

    start = np.concatenate(
        [np.ones(k) if kind == "vector" else np.eye(k).ravel(), np.zeros(k)]
    )
    result = scipy_optimize.minimize(
        objective, start, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 5000}
    )
    return scores(result.x), result.fun


@pytest.mark.parametrize("kind", ["vector", "matrix"])
def test_scaling_matches_a_direct_scipy_minimize(kind):
    rng = np.random.default_rng(21)
    n, k = 400, 4
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) * rng.uniform(0.5, 3, size=k) + 1.5 * np.eye(k)[labels]
    fit = smk.fit_vector_scaling if kind == "vector" else smk.fit_matrix_scaling
    scaling = fit(logits, labels)
    reference_scores, reference_loss = _direct_minimize(logits, labels, kind)
    assert scaling.nll == pytest.approx(reference_loss, rel=1e-9)
    np.testing.assert_allclose(
        smk.softmax(scaling(logits)), scipy_special.softmax(reference_scores, axis=1), atol=1e-5
    )


def test_regularised_matrix_scaling_matches_a_direct_scipy_minimize():
    rng = np.random.default_rng(22)
    n, k = 60, 5  # few samples: the penalties matter
    labels = rng.integers(0, k, size=n)
    logits = 2 * rng.normal(size=(n, k)) + 2 * np.eye(k)[labels]
    scaling = smk.fit_matrix_scaling(logits, labels, l2_off_diagonal=0.01, l2_bias=0.003)
    reference_scores, reference_loss = _direct_minimize(logits, labels, "matrix", 0.01, 0.003)
    off = scaling.weight * (1 - np.eye(k))
    penalised = scaling.nll + 0.01 * np.sum(off**2) + 0.003 * np.sum(scaling.bias**2)
    assert penalised == pytest.approx(reference_loss, rel=1e-9)
    np.testing.assert_allclose(scaling(logits), reference_scores, atol=1e-5)
    strong = smk.fit_matrix_scaling(logits, labels, l2_off_diagonal=1e6, l2_bias=1e6)
    assert np.max(np.abs(strong.weight * (1 - np.eye(k)))) < 1e-4
    assert np.max(np.abs(strong.bias)) < 1e-4


def _draw_labels(rng, true_logits):
    p = scipy_special.softmax(true_logits, axis=1)
    cumulative = p.cumsum(axis=1)
    return (rng.uniform(size=(len(p), 1)) > cumulative).sum(axis=1)


def test_vector_scaling_recovers_a_known_miscalibration():
    rng = np.random.default_rng(23)
    n, k = 40000, 3
    logits = 2 * rng.normal(size=(n, k))
    scale, bias = np.array([0.5, 1.0, 2.0]), np.array([0.6, -0.2, -0.4])
    labels = _draw_labels(rng, logits * scale + bias)
    scaling = smk.fit_vector_scaling(logits, labels)
    np.testing.assert_allclose(scaling.scale, scale, atol=0.05)
    np.testing.assert_allclose(scaling.bias, bias - bias.mean(), atol=0.05)
    assert abs(scaling.bias.sum()) < 1e-9  # the gauge of the starting point


def test_matrix_scaling_recovers_a_known_miscalibration():
    rng = np.random.default_rng(24)
    n, k = 40000, 3
    logits = 2 * rng.normal(size=(n, k))
    weight = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 0.0], [-0.3, 0.0, 1.5]])
    bias = np.array([0.3, 0.0, -0.3])
    labels = _draw_labels(rng, logits @ weight.T + bias)
    scaling = smk.fit_matrix_scaling(logits, labels)
    # W and W + 1 v^T give the same probabilities: compare the probabilities.
    fitted = smk.softmax(scaling(logits))
    true = scipy_special.softmax(logits @ weight.T + bias, axis=1)
    assert np.mean(np.abs(fitted - true)) < 0.01
    centred = scaling.weight - scaling.weight.mean(axis=0)
    np.testing.assert_allclose(centred, weight - weight.mean(axis=0), atol=0.06)


def test_scaling_with_weights_soft_labels_and_axis():
    rng = np.random.default_rng(25)
    logits, labels = random_problem(rng, n=150, k=3)
    counts = rng.integers(0, 3, size=150)
    weighted = smk.fit_vector_scaling(logits, labels, weight=counts)
    repeated = smk.fit_vector_scaling(np.repeat(logits, counts, 0), np.repeat(labels, counts))
    np.testing.assert_allclose(weighted(logits), repeated(logits), atol=1e-5)
    onehot = smk.fit_matrix_scaling(logits, np.eye(3)[labels])
    indices = smk.fit_matrix_scaling(logits, labels)
    np.testing.assert_allclose(onehot(logits), indices(logits), atol=1e-5)
    transposed = smk.fit_vector_scaling(logits.T, labels, axis=0)
    assert transposed.axis == 0
    np.testing.assert_allclose(transposed(logits.T).T, smk.fit_vector_scaling(logits, labels)(
        logits), atol=1e-6)


def test_scaling_apply_on_every_backend(backend):
    rng = np.random.default_rng(26)
    vector = VectorScaling(rng.normal(size=4), rng.normal(size=4))
    matrix = MatrixScaling(rng.normal(size=(4, 4)), rng.normal(size=4), axis=1)
    x = rng.normal(size=(3, 4, 2))
    last = x.transpose(0, 2, 1)
    expected_vector = last * vector.scale + vector.bias
    expected_matrix = np.einsum("kj,bjt->bkt", matrix.weight, x) + matrix.bias[:, None]
    got_vector = vector(backend.asarray(last))
    got_matrix = matrix(backend.asarray(x))
    assert backend.is_native(got_vector) and backend.is_native(got_matrix)
    np.testing.assert_allclose(backend.to_numpy(got_vector), expected_vector, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(got_matrix), expected_matrix, rtol=1e-12)


def test_scaling_errors():
    logits = np.array([[1.0, 2.0], [0.0, 1.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match="finite for vector scaling"):
        smk.fit_vector_scaling(np.array([[1.0, -np.inf], [0.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="l2_off_diagonal must be >= 0, got -1.0"):
        smk.fit_matrix_scaling(logits, [0, 1, 0], l2_off_diagonal=-1.0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        smk.fit_vector_scaling(logits, [0, 1, 0], max_iter=0)
    with pytest.raises(ValueError, match="labels must hold class indices"):
        smk.fit_matrix_scaling(logits, [0, 1, 5])
    scaling = smk.fit_vector_scaling(logits, [0, 1, 1])
    with pytest.raises(ValueError, match="must have 2 classes along axis 1"):
        scaling(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="1-D arrays of one entry per class"):
        VectorScaling(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"\(classes, classes\)"):
        MatrixScaling(np.ones((2, 3)), np.ones(2))


def test_scaling_that_stops_early_warns():
    rng = np.random.default_rng(27)
    logits, labels = random_problem(rng, n=200, k=4)
    with pytest.warns(CalibrationWarning, match="did not converge"):
        smk.fit_matrix_scaling(logits, labels, max_iter=1)


def test_scaling_without_scipy_names_the_extra():
    code = (
        "import sys; sys.modules['scipy'] = None; sys.modules['scipy.optimize'] = None\n"
        "import softmaxkit as smk\n"
        "try:\n"
        "    smk.fit_vector_scaling([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0, 1, 1])\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "print(smk.fit_temperature([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0, 1, 1]) > 0)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert 'need SciPy: pip install "softmaxkit[calibration]"' in output
    assert output.strip().endswith("True")  # the temperature needs no SciPy


def test_import_touches_no_optional_library():
    code = (
        "import sys, softmaxkit, softmaxkit.calibration, softmaxkit.cli; "
        "heavy = {'scipy', 'matplotlib', 'sklearn', 'keras', 'torch', 'jax', 'tensorflow', "
        "'transformers'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
