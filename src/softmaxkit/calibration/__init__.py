"""Probability calibration: temperature, vector and matrix scaling, and their metrics.

A trained classifier's probabilities are often over-confident. Calibration maps
its logits, on held-out data, so that the confidence matches the accuracy (Guo,
Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks"):

- :func:`fit_temperature`: one temperature ``T`` (``softmax(z / T)``), exact to a
  relative 1e-10; changes no prediction.
- :func:`fit_vector_scaling`, :func:`fit_matrix_scaling`: ``s * z + b`` and
  ``W z + b``, by L-BFGS (SciPy, the ``calibration`` extra).
- Metrics: :func:`expected_calibration_error` (ECE, RMS-CE, MCE),
  :func:`classwise_ece`, :func:`brier_score`, :func:`negative_log_likelihood`.
- :func:`reliability_diagram` (matplotlib, the ``plot`` extra).

Every name is also at the top level (``softmaxkit.fit_temperature``); no
optional library is imported until a function needs it.

Examples
--------
>>> import numpy as np
>>> import softmaxkit as smk
>>> rng = np.random.default_rng(0)
>>> labels = rng.integers(0, 5, size=4000)
>>> logits = 3.0 * (rng.normal(size=(4000, 5)) + 1.2 * np.eye(5)[labels])  # over-confident
>>> t = smk.fit_temperature(logits, labels)
>>> before = smk.expected_calibration_error(logits, labels, from_logits=True)
>>> after = smk.expected_calibration_error(logits / t, labels, from_logits=True)
>>> bool(t > 2), bool(after < before / 4)
(True, True)
"""

from ._inputs import CalibrationWarning
from ._metrics import (
    brier_score,
    classwise_ece,
    expected_calibration_error,
    negative_log_likelihood,
)
from ._plot import reliability_diagram
from ._scaling import MatrixScaling, VectorScaling, fit_matrix_scaling, fit_vector_scaling
from ._temperature import fit_temperature

__all__ = [
    "fit_temperature",
    "fit_vector_scaling",
    "fit_matrix_scaling",
    "VectorScaling",
    "MatrixScaling",
    "expected_calibration_error",
    "classwise_ece",
    "brier_score",
    "negative_log_likelihood",
    "reliability_diagram",
    "CalibrationWarning",
]
