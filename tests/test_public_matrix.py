"""The public functions of softmaxkit on every backend of the ``xp`` matrix.

A first part of issue 15's matrix: the elementwise and row-wise functions whose
reference is their formula written in NumPy float64 here (not softmaxkit's own output).
The other public names are listed with the reason they are not in this matrix yet.
"""

from __future__ import annotations

import numpy as np
import pytest
from matrix import assert_close

import softmaxkit as smk


# name: the reference formula in NumPy float64, applied along the last axis.
def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


REFERENCES = {
    "softmax": lambda x: np.exp(_log_softmax(x)),
    "log_softmax": _log_softmax,
    "logsumexp": lambda x: x.max(-1) + np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
    "entropy": lambda x: -(np.exp(_log_softmax(x)) * _log_softmax(x)).sum(-1),
}

# Every other public name, with why it is not (yet) in the matrix above.
NOT_IN_THE_MATRIX = {
    name: "not yet covered by this matrix (issue 15, to do)"
    for name in [
        "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits",
        "binary_cross_entropy", "kl_divergence", "softmax_vjp", "log_softmax_vjp",
        "softmax_jacobian", "sample", "filter_logits", "gumbel_softmax", "sparsemax",
        "entmax15", "entmax", "sparsemax_vjp", "entmax_vjp", "sparsemax_loss",
        "entmax15_loss", "entmax_loss", "attention", "linear_cross_entropy",
        "fit_temperature", "fit_vector_scaling", "fit_matrix_scaling",
        "expected_calibration_error", "classwise_ece", "brier_score",
        "negative_log_likelihood", "reliability_diagram",
    ]
} | {
    name: "not an array function"
    for name in [
        "SoftmaxPolicy", "LogSumExpState", "softmax_file", "VectorScaling", "MatrixScaling",
        "CalibrationWarning", "get_num_threads", "set_num_threads", "num_threads", "plot",
    ]
}


def test_every_public_name_is_listed():
    listed = set(REFERENCES) | set(NOT_IN_THE_MATRIX)
    assert set(smk.__all__) == listed, set(smk.__all__) ^ listed


X = np.array([[1.0, -2.0, 3.5, 0.25], [-30.0, 4.0, 4.0, -0.5]])


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_the_formula(xp, name, dtype):
    x = xp.asarray(X, dtype=dtype)
    result = getattr(smk, name)(x)
    rtol = 1e-5 if dtype == "float32" else 1e-13
    assert_close(result, REFERENCES[name](X), xp, rtol=rtol, atol=rtol * 1e-3, dtype=dtype,
                 like=x)
