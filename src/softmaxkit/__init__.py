"""softmaxkit: softmax, log-softmax and logsumexp, exact at the edges, on every array library.

>>> import softmaxkit as smk
>>> smk.softmax([1.0, 3.0, 2.0])
array([0.09003057, 0.66524096, 0.24472847])
"""

from . import plot
from ._linear_cross_entropy import linear_cross_entropy
from ._logsumexp import logsumexp
from ._softmax import log_softmax, softmax
from ._threads import get_num_threads, num_threads, set_num_threads
from .attention import attention
from .calibration import (
    CalibrationWarning,
    MatrixScaling,
    VectorScaling,
    brier_score,
    classwise_ece,
    expected_calibration_error,
    fit_matrix_scaling,
    fit_temperature,
    fit_vector_scaling,
    negative_log_likelihood,
    reliability_diagram,
)
from .gradients import log_softmax_vjp, softmax_jacobian, softmax_vjp
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    entropy,
    kl_divergence,
    log_sigmoid,
    nll_loss,
    sigmoid,
)
from .policy import SoftmaxPolicy
from .sampling import filter_logits, gumbel_softmax, sample
from .sparse import (
    entmax,
    entmax15,
    entmax15_loss,
    entmax_loss,
    entmax_vjp,
    sparsemax,
    sparsemax_loss,
    sparsemax_vjp,
)
from .streaming import LogSumExpState, softmax_file

__all__ = [
    # the core
    "softmax",
    "log_softmax",
    "logsumexp",
    # losses and gradients
    "cross_entropy",
    "nll_loss",
    "sigmoid",
    "log_sigmoid",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "kl_divergence",
    "entropy",
    "softmax_vjp",
    "log_softmax_vjp",
    "softmax_jacobian",
    # sampling and policies
    "sample",
    "filter_logits",
    "gumbel_softmax",
    "SoftmaxPolicy",
    # sparse alternatives
    "sparsemax",
    "entmax15",
    "entmax",
    "sparsemax_vjp",
    "entmax_vjp",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_loss",
    # beyond memory and beyond one machine
    "LogSumExpState",
    "softmax_file",
    "attention",
    "linear_cross_entropy",
    # calibration
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
    # threads of the compiled kernel
    "get_num_threads",
    "set_num_threads",
    "num_threads",
    # figures
    "plot",
]


def _version_of_the_source_tree() -> str:
    """meson.build's version, for a source checkout imported without a build."""
    import re
    from pathlib import Path

    meson_build = Path(__file__).resolve().parents[2] / "meson.build"
    try:
        text = meson_build.read_text(encoding="utf-8")
    except OSError:
        return "0+unknown"
    found = re.search(r"project\(\s*'softmaxkit'[^)]*?\bversion\s*:\s*'([^']+)'", text)
    return found.group(1) if found else "0+unknown"


try:
    # Written by meson at build time from meson.build's version.
    from ._version import __version__
except ImportError:
    __version__ = _version_of_the_source_tree()
del _version_of_the_source_tree
