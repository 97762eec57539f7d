"""softmaxkit: softmax, log-softmax and logsumexp, exact at the edges, on every array library.

>>> import softmaxkit as smk
>>> smk.softmax([1.0, 3.0, 2.0])
array([0.09003057, 0.66524096, 0.24472847])
"""

from ._logsumexp import logsumexp
from ._softmax import log_softmax, softmax
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

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "sparsemax",
    "entmax15",
    "entmax",
    "sparsemax_vjp",
    "entmax_vjp",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_loss",
]
__version__ = "0.1.0"
