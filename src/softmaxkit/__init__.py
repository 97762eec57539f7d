"""softmaxkit: softmax, log-softmax and logsumexp, exact at the edges, on every array library.

>>> import softmaxkit as smk
>>> smk.softmax([1.0, 3.0, 2.0])
array([0.09003057, 0.66524096, 0.24472847])
"""

from ._linear_cross_entropy import linear_cross_entropy
from ._logsumexp import logsumexp
from ._softmax import log_softmax, softmax
from .attention import attention
from .streaming import LogSumExpState, softmax_file

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "LogSumExpState",
    "softmax_file",
    "attention",
    "linear_cross_entropy",
]
__version__ = "0.1.0"
