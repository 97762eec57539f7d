"""softmaxkit for PyTorch: functional forms with ``dim`` and ``torch.nn`` modules.

Importing this module requires PyTorch (``import softmaxkit`` alone does not import
it). CPU tensors of float32, float64, float16 and bfloat16 run in the compiled kernel
without a copy, with autograd (closed-form gradients); other tensors take the generic
path.
"""

from __future__ import annotations

import torch  # noqa: F401  (importing softmaxkit.torch requires PyTorch)

from ._functional import log_softmax, logsumexp, softmax
from ._modules import CrossEntropyLoss, LogSoftmax, Softmax

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "Softmax",
    "LogSoftmax",
    "CrossEntropyLoss",
]
