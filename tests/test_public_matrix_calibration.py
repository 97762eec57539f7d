"""Calibration on the ``xp`` matrix: the fits, the metrics, the reliability diagram.

Part of issue 15's matrix (see test_public_matrix.py). The references are written
here in NumPy float64, without softmaxkit: the temperature is the root of the NLL's
derivative in ``1/T`` (SciPy's ``brentq``), vector and matrix scaling are refitted
with SciPy's BFGS on the NLL (and its gradient) written out, and the metrics are
their formulas (Naeini et al. 2015, Guo et al. 2017, Kull et al. 2019, Brier 1950).

Every calibration function reads its inputs as a host float64 NumPy copy (documented
in ``calibration/_inputs.py``) and returns a Python float (a fit's parameters are
float64 NumPy arrays): on Dask it computes the input, by design, so those tests are
marked ``allow_dask_compute``. ``VectorScaling`` and ``MatrixScaling`` map arrays of
any library to arrays of the same library and dtype (lazily on Dask).
"""

from __future__ import annotations

import numpy as np
import pytest
from matrix import assert_close
from scipy import optimize

import softmaxkit as smk

COVERED = (
    "fit_temperature",
    "fit_vector_scaling",
    "fit_matrix_scaling",
    "expected_calibration_error",
    "classwise_ece",
    "brier_score",
    "negative_log_likelihood",
    "reliability_diagram",
    "VectorScaling",
    "MatrixScaling",
)

DTYPES = pytest.mark.parametrize("dtype", ["float32", "float64"])
COMPUTES = pytest.mark.allow_dask_compute  # a host float64 copy of the inputs, by design
CONVERGES = pytest.mark.filterwarnings("error::softmaxkit.CalibrationWarning")


def _data(n=300, k=3, seed=0):
    """Over-confident, class-skewed logits and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    clean = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    logits = 3.0 * clean * np.array([1.5, 1.0, 0.7]) + np.array([0.5, 0.0, -0.5])
    return logits, labels


LOGITS, LABELS = _data()
ROW_WEIGHT = np.random.default_rng(1).uniform(0.2, 2.0, size=LABELS.size)


def _inputs(xp, dtype, logits=LOGITS, labels=LABELS):
    """The backend's arrays, and the float64 values the function sees (rounded to dtype)."""
    seen = np.asarray(logits, dtype=dtype).astype(np.float64)
    return xp.asarray(logits, dtype=dtype), xp.asarray(labels, dtype="int64"), seen


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def _nll(z, labels, weight=None):
    terms = -_log_softmax(z)[np.arange(labels.size), labels]
    w = np.ones(labels.size) if weight is None else weight
    return float(np.dot(w, terms) / w.sum())


# ------------------------------------------------------------------------ the fits


def _temperature_ref(z, labels, weight=None):
    """The root in beta = 1/T of dL/dbeta = mean(E_p[z] - z_y), p = softmax(beta z)."""
    w = np.ones(labels.size) if weight is None else weight
    z_y = z[np.arange(labels.size), labels]

    def slope(beta):
        p = np.exp(_log_softmax(beta * z))
        return float(np.dot(w, (p * z).sum(axis=1) - z_y) / w.sum())

    return 1.0 / optimize.brentq(slope, 1e-3, 1e3, xtol=1e-15, rtol=1e-15)


@COMPUTES
@CONVERGES
@DTYPES
def test_fit_temperature(xp, dtype):
    x, labels, seen = _inputs(xp, dtype)
    t = smk.fit_temperature(x, labels)
    weighted = smk.fit_temperature(x, labels, weight=xp.asarray(ROW_WEIGHT, dtype=dtype))
    assert isinstance(t, float) and isinstance(weighted, float)
    np.testing.assert_allclose(t, _temperature_ref(seen, LABELS), rtol=1e-9)
    w = ROW_WEIGHT.astype(dtype).astype(np.float64)
    np.testing.assert_allclose(weighted, _temperature_ref(seen, LABELS, w), rtol=1e-9)
    assert t > 1.5  # the logits are over-confident


@COMPUTES
@DTYPES
def test_fit_temperature_known_optimum(xp, dtype):
    """Three of four right with logit 4 against 0, 0: the NLL is least at exp(4/T) = 6."""
    z = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
    x, labels, _ = _inputs(xp, dtype, z.T, np.array([0, 1, 2, 1]))
    t = smk.fit_temperature(x, labels, axis=0)
    np.testing.assert_allclose(t, 4 / np.log(6), rtol=1e-10)


def _bfgs(objective, start):
    result = optimize.minimize(objective, start, jac=True, method="BFGS",
                               options={"gtol": 1e-11, "maxiter": 10_000})
    return result.x


def _vector_ref(z, labels):
    """Vector scaling refitted: BFGS on the mean NLL of softmax(s z + b)."""
    n, k = z.shape
    onehot = np.eye(k)[labels]

    def objective(theta):
        a = z * theta[:k] + theta[k:]
        log_p = _log_softmax(a)
        residual = (np.exp(log_p) - onehot) / n
        gradient = np.concatenate([(residual * z).sum(axis=0), residual.sum(axis=0)])
        return -float((onehot * log_p).sum() / n), gradient

    theta = _bfgs(objective, np.concatenate([np.ones(k), np.zeros(k)]))
    return theta[:k], theta[k:]


def _matrix_ref(z, labels, off_diagonal=0.0, bias_penalty=0.0):
    """Matrix scaling refitted: BFGS on the mean NLL of softmax(W z + b) plus the penalties."""
    n, k = z.shape
    onehot = np.eye(k)[labels]
    off = 1.0 - np.eye(k)

    def objective(theta):
        w, b = theta[: k * k].reshape(k, k), theta[k * k :]
        log_p = _log_softmax(z @ w.T + b)
        residual = (np.exp(log_p) - onehot) / n
        loss = -float((onehot * log_p).sum() / n)
        loss += off_diagonal * float(np.sum((w * off) ** 2)) + bias_penalty * float(b @ b)
        gw = residual.T @ z + 2 * off_diagonal * w * off
        gb = residual.sum(axis=0) + 2 * bias_penalty * b
        return loss, np.concatenate([gw.ravel(), gb])

    theta = _bfgs(objective, np.concatenate([np.eye(k).ravel(), np.zeros(k)]))
    return theta[: k * k].reshape(k, k), theta[k * k :]


@COMPUTES
@CONVERGES
@DTYPES
def test_fit_vector_scaling(xp, dtype):
    x, labels, seen = _inputs(xp, dtype)
    fitted = smk.fit_vector_scaling(x, labels)
    assert isinstance(fitted, smk.VectorScaling)
    scale, bias = _vector_ref(seen, LABELS)
    # The biases are fixed up to a common constant: the fit keeps them summing to 0.
    np.testing.assert_allclose(fitted.scale, scale, rtol=1e-5)
    np.testing.assert_allclose(fitted.bias, bias - bias.mean(), atol=1e-5)
    np.testing.assert_allclose(fitted.bias.sum(), 0.0, atol=1e-12)
    np.testing.assert_allclose(fitted.nll, _nll(seen * scale + bias, LABELS), rtol=1e-9)
    # Its map, on the backend: scale * z + bias in the input's library and dtype.
    calibrated = fitted(x)
    assert_close(calibrated, seen * fitted.scale + fitted.bias, xp, rtol=2e-6, atol=1e-5,
                 dtype=dtype, like=x)


@COMPUTES
@CONVERGES
@DTYPES
@pytest.mark.parametrize(("off_diagonal", "bias_penalty"), [(0.0, 0.0), (0.01, 0.02)])
def test_fit_matrix_scaling(xp, dtype, off_diagonal, bias_penalty):
    x, labels, seen = _inputs(xp, dtype)
    fitted = smk.fit_matrix_scaling(x, labels, l2_off_diagonal=off_diagonal,
                                    l2_bias=bias_penalty)
    assert isinstance(fitted, smk.MatrixScaling)
    weight, bias = _matrix_ref(seen, LABELS, off_diagonal, bias_penalty)
    expected = _log_softmax(seen @ weight.T + bias)
    got = _log_softmax(seen @ fitted.weight.T + fitted.bias)
    # Without a penalty W is fixed up to a common row (the probabilities are not).
    np.testing.assert_allclose(np.exp(got), np.exp(expected), atol=1e-5)
    np.testing.assert_allclose(fitted.nll, _nll(seen @ weight.T + bias, LABELS), rtol=1e-8)
    if off_diagonal:
        np.testing.assert_allclose(fitted.weight, weight, atol=1e-5)
        np.testing.assert_allclose(fitted.bias, bias, atol=1e-5)
    calibrated = fitted(x)
    assert_close(calibrated, seen @ fitted.weight.T + fitted.bias, xp, rtol=2e-6, atol=1e-5,
                 dtype=dtype, like=x)


# ------------------------------------------------------------ the maps, given parameters

SCALE, BIAS = np.array([0.5, 2.0, -1.0]), np.array([1.0, -0.25, 0.0])
MATRIX = np.array([[1.0, 0.5, 0.0], [-0.25, 2.0, 0.125], [0.0, 1.0, -1.0]])


@DTYPES
def test_vector_scaling_apply(xp, dtype):
    z = LOGITS[:6].astype(dtype).astype(np.float64)
    x = xp.asarray(z, dtype=dtype)
    rtol = 2e-6 if dtype == "float32" else 1e-15
    scaling = smk.VectorScaling(SCALE, BIAS)
    assert_close(scaling.apply(x), z * SCALE + BIAS, xp, rtol=rtol, atol=rtol, dtype=dtype,
                 like=x)
    along_rows = smk.VectorScaling(SCALE, BIAS, axis=0)
    assert_close(along_rows(xp.asarray(z.T, dtype=dtype)), (z * SCALE + BIAS).T, xp, rtol=rtol,
                 atol=rtol, dtype=dtype)


@DTYPES
def test_matrix_scaling_apply(xp, dtype):
    z = LOGITS[:6].astype(dtype).astype(np.float64)
    x = xp.asarray(z, dtype=dtype)
    rtol = 2e-6 if dtype == "float32" else 1e-14
    scaling = smk.MatrixScaling(MATRIX, BIAS)
    expected = np.einsum("kj,ij->ik", MATRIX, z) + BIAS
    assert_close(scaling.apply(x), expected, xp, rtol=rtol, atol=rtol, dtype=dtype, like=x)
    along_rows = smk.MatrixScaling(MATRIX, BIAS, axis=0)
    assert_close(along_rows(xp.asarray(z.T, dtype=dtype)), expected.T, xp, rtol=rtol, atol=rtol,
                 dtype=dtype)


# --------------------------------------------------------------------- the metrics


def _probabilities(dtype):
    """Probability rows in ``dtype`` (each summing to 1 within its rounding), as seen."""
    p = np.exp(_log_softmax(LOGITS / 3.0)).astype(dtype)
    return p, p.astype(np.float64)


def _binned_error(confidence, outcome, weight, n_bins, norm="l1"):
    """Bins ((b-1)/M, b/M] (the first [0, 1/M]); |mean outcome - mean confidence| per bin."""
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gaps, shares = [], []
    for b in range(n_bins):
        inside = index == b
        if weight[inside].sum() > 0:
            w = weight[inside]
            gaps.append(abs(np.dot(w, outcome[inside]) - np.dot(w, confidence[inside])) / w.sum())
            shares.append(w.sum() / weight.sum())
    gaps, shares = np.array(gaps), np.array(shares)
    if norm == "l1":
        return float(np.dot(shares, gaps))
    if norm == "l2":
        return float(np.sqrt(np.dot(shares, gaps**2)))
    return float(gaps.max())


def _top_label(p, labels):
    return p.max(axis=1), (p.argmax(axis=1) == labels).astype(np.float64)


@COMPUTES
@DTYPES
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_expected_calibration_error(xp, dtype, norm):
    p, seen = _probabilities(dtype)
    probs, labels = xp.asarray(p), xp.asarray(LABELS, dtype="int64")
    ece = smk.expected_calibration_error(probs, labels, n_bins=10, norm=norm)
    assert isinstance(ece, float)
    confidence, outcome = _top_label(seen, LABELS)
    ones = np.ones(LABELS.size)
    np.testing.assert_allclose(ece, _binned_error(confidence, outcome, ones, 10, norm),
                               rtol=1e-12)
    # From the logits, weighted.
    x, _, z = _inputs(xp, dtype)
    w = ROW_WEIGHT.astype(dtype).astype(np.float64)
    weighted = smk.expected_calibration_error(
        x, labels, from_logits=True, n_bins=7, norm=norm, weight=xp.asarray(ROW_WEIGHT, dtype=dtype)
    )
    confidence, outcome = _top_label(np.exp(_log_softmax(z)), LABELS)
    np.testing.assert_allclose(weighted, _binned_error(confidence, outcome, w, 7, norm),
                               rtol=1e-12)


@COMPUTES
@DTYPES
def test_expected_calibration_error_quantile_bins(xp, dtype):
    """Quantile bins of equal counts: the sorted confidences split in equal groups."""
    p, seen = _probabilities(dtype)
    ece = smk.expected_calibration_error(xp.asarray(p), xp.asarray(LABELS, dtype="int64"),
                                         n_bins=6, strategy="quantile")
    confidence, outcome = _top_label(seen, LABELS)
    assert np.unique(confidence).size == confidence.size  # no ties across a bin edge
    order = np.argsort(confidence)
    groups = np.array_split(order, 6)  # 300 samples: 6 groups of 50
    expected = sum(abs(outcome[g].mean() - confidence[g].mean()) * g.size for g in groups)
    np.testing.assert_allclose(ece, expected / confidence.size, rtol=1e-12)


@COMPUTES
@DTYPES
def test_classwise_ece(xp, dtype):
    p, seen = _probabilities(dtype)
    result = smk.classwise_ece(xp.asarray(p), xp.asarray(LABELS, dtype="int64"), n_bins=8)
    assert isinstance(result, float)
    ones = np.ones(LABELS.size)
    expected = np.mean([
        _binned_error(seen[:, k], (LABELS == k).astype(np.float64), ones, 8) for k in range(3)
    ])
    np.testing.assert_allclose(result, expected, rtol=1e-12)


@COMPUTES
@DTYPES
def test_brier_score(xp, dtype):
    p, seen = _probabilities(dtype)
    labels = xp.asarray(LABELS, dtype="int64")
    onehot = np.eye(3)[LABELS]
    score = smk.brier_score(xp.asarray(p), labels)
    assert isinstance(score, float)
    np.testing.assert_allclose(score, np.mean(((seen - onehot) ** 2).sum(axis=1)), rtol=1e-12)
    w = ROW_WEIGHT.astype(dtype).astype(np.float64)
    weighted = smk.brier_score(xp.asarray(p), labels, weight=xp.asarray(ROW_WEIGHT, dtype=dtype))
    expected = np.dot(w, ((seen - onehot) ** 2).sum(axis=1)) / w.sum()
    np.testing.assert_allclose(weighted, expected, rtol=1e-12)
    # Soft labels (class probabilities of the scores' shape), from the logits.
    soft = np.full((LABELS.size, 3), 0.1)
    soft[np.arange(LABELS.size), LABELS] = 0.8
    x, _, z = _inputs(xp, dtype)
    from_logits = smk.brier_score(x, xp.asarray(soft, dtype=dtype), from_logits=True)
    q = soft.astype(dtype).astype(np.float64)
    q = q / q.sum(axis=1, keepdims=True)
    expected = np.mean(((np.exp(_log_softmax(z)) - q) ** 2).sum(axis=1))
    np.testing.assert_allclose(from_logits, expected, rtol=1e-12)


@COMPUTES
@DTYPES
def test_negative_log_likelihood(xp, dtype):
    p, seen = _probabilities(dtype)
    labels = xp.asarray(LABELS, dtype="int64")
    nll = smk.negative_log_likelihood(xp.asarray(p), labels)
    assert isinstance(nll, float)
    np.testing.assert_allclose(nll, -np.mean(np.log(seen[np.arange(LABELS.size), LABELS])),
                               rtol=1e-12)
    x, _, z = _inputs(xp, dtype)
    w = ROW_WEIGHT.astype(dtype).astype(np.float64)
    weighted = smk.negative_log_likelihood(x, labels, from_logits=True,
                                           weight=xp.asarray(ROW_WEIGHT, dtype=dtype))
    np.testing.assert_allclose(weighted, _nll(z, LABELS, w), rtol=1e-12)


# ---------------------------------------------------------------- the reliability diagram


@COMPUTES
@DTYPES
def test_reliability_diagram(xp, dtype):
    """It returns a matplotlib Figure: its bars are the per-bin statistics."""
    pytest.importorskip("matplotlib")
    p, seen = _probabilities(dtype)
    figure = smk.reliability_diagram(xp.asarray(p), xp.asarray(LABELS, dtype="int64"), n_bins=5)
    confidence, outcome = _top_label(seen, LABELS)
    index = np.clip(np.ceil(confidence * 5).astype(int) - 1, 0, 4)
    filled = [b for b in range(5) if np.any(index == b)]
    accuracy = [outcome[index == b].mean() for b in filled]
    gap = [confidence[index == b].mean() - outcome[index == b].mean() for b in filled]
    share = [100 * np.mean(index == b) for b in range(5)]
    diagram, counts = figure.axes[0], figure.axes[1]
    accuracy_bars, gap_bars = diagram.containers[:2]
    np.testing.assert_allclose([bar.get_height() for bar in accuracy_bars], accuracy,
                               rtol=1e-12)
    np.testing.assert_allclose([bar.get_height() for bar in gap_bars], gap, rtol=1e-10,
                               atol=1e-15)
    np.testing.assert_allclose([bar.get_x() for bar in accuracy_bars], [b / 5 for b in filled],
                               atol=1e-15)
    np.testing.assert_allclose([bar.get_height() for bar in counts.containers[0]], share,
                               rtol=1e-12)
    ece = _binned_error(confidence, outcome, np.ones(LABELS.size), 5)
    legend = [text.get_text() for text in diagram.get_legend().get_texts()]
    assert f"ECE = {100 * ece:.2f}%" in legend
