"""The public functions of softmaxkit on every backend of the ``xp`` matrix.

Here the elementwise and row-wise functions whose reference is their formula written
in NumPy float64 (not softmaxkit's own output); the losses, gradients and attention,
sampling, sparse mappings, the policy and the streaming state, and calibration run
over the matrix in test_public_matrix_{losses,sampling_sparse,calibration}.py. The
test below checks that every public name is in one of them, or listed with the reason
it takes no array.
"""

from __future__ import annotations

import numpy as np
import pytest
from matrix import Backend, assert_close

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

# The other public array functions run over the matrix in files of their own.
import test_public_matrix_calibration  # noqa: E402
import test_public_matrix_losses  # noqa: E402
import test_public_matrix_sampling_sparse  # noqa: E402

COVERED_ELSEWHERE = {
    name: module.__name__
    for module in (
        test_public_matrix_losses,
        test_public_matrix_sampling_sparse,
        test_public_matrix_calibration,
    )
    for name in module.COVERED
}

# Every other public name, with why it is not in the matrix.
NOT_IN_THE_MATRIX = {
    "softmax_file": "reads and writes files (tests/test_streaming.py, test_file_writing.py)",
    "CalibrationWarning": "a warning class",
    "get_num_threads": "a thread setting (tests/test_kernel_pool.py)",
    "set_num_threads": "a thread setting (tests/test_kernel_pool.py)",
    "num_threads": "a thread setting (tests/test_kernel_pool.py)",
    "plot": "the figures module (tests/test_plot.py)",
}


def test_every_public_name_is_listed():
    groups = [set(REFERENCES), set(COVERED_ELSEWHERE), set(NOT_IN_THE_MATRIX)]
    listed = set().union(*groups)
    assert set(smk.__all__) == listed, set(smk.__all__) ^ listed
    assert sum(map(len, groups)) == len(listed), "a name is listed twice"


X = np.array([[1.0, -2.0, 3.5, 0.25], [-30.0, 4.0, 4.0, -0.5]])


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_the_formula(xp, name, dtype):
    x = xp.asarray(X, dtype=dtype)
    result = getattr(smk, name)(x)
    rtol = 1e-5 if dtype == "float32" else 1e-13
    assert_close(result, REFERENCES[name](X), xp, rtol=rtol, atol=rtol * 1e-3, dtype=dtype,
                 like=x)


# The functions that do not take TensorFlow tensors say so with a TypeError that names
# the library (not an AttributeError from inside the adapter).
TENSORFLOW_REFUSED = {
    "sparsemax": lambda x: smk.sparsemax(x),
    "entmax15": lambda x: smk.entmax15(x),
    "cross_entropy": lambda x: smk.cross_entropy(x, np.array([0, 1])),
    "attention": lambda x: smk.attention(x, x, x),
    "softmax_jacobian": lambda x: smk.softmax_jacobian(x),
    "LogSumExpState.update": lambda x: smk.LogSumExpState().update(x),
}


@pytest.mark.xp_backends(Backend.TENSORFLOW)
@pytest.mark.parametrize("name", list(TENSORFLOW_REFUSED))
def test_tensorflow_refused(xp, name):
    x = xp.asarray(X, dtype="float32")
    with pytest.raises(TypeError, match="TensorFlow tensors are not supported by this function"):
        TENSORFLOW_REFUSED[name](x)

