"""Losses: cross-entropy, negative log-likelihood, the sigmoid family, KL divergence, entropy.

Written once against the array namespace ``xp``; every backend runs this code, and
PyTorch and JAX inputs keep their autograd. The normalization itself is the core's
:func:`~softmaxkit.log_softmax` (one call per block of rows), so the per-row loss
``lse - x_target`` has the core's accuracy, and the compiled NumPy kernel, where
present, serves the NumPy forward and backward. The common NumPy cross-entropy call
(class indices, scalar temperature, no mask, no label smoothing with class weights)
takes a shorter
road: one kernel run per block writes the scaled softmax into the gradient and
returns each row's normalizer, and one scatter subtracts the target.

The modules, one concept each:

- ``_checks``: the targets, class weights and options of the class losses, and the
  inputs of :func:`~softmaxkit.linear_cross_entropy`;
- ``_rows``: the per-row loss and gradient pieces shared by the class losses;
- ``_class_loss``: the validated call and the general computation of a block of rows;
- ``_numpy_blocks``: the NumPy road (blocks of rows, the kernel's fused block);
- ``_softcap``: the soft cap of the logits;
- ``_cross_entropy``: :func:`cross_entropy` and :func:`nll_loss`;
- ``_binary``: :func:`sigmoid`, :func:`log_sigmoid` and the binary cross-entropies;
- ``_divergences``: :func:`kl_divergence` and :func:`entropy`.

The Fenchel-Young losses of the sparse mappings are in :mod:`softmaxkit.sparse`.
"""

from __future__ import annotations

from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    log_sigmoid,
    sigmoid,
)

# Used by softmaxkit._linear_cross_entropy, which shares the checks and the overflow
# convention of the class losses.
from ._checks import _check_linear_head, _check_options, _overflow_is_inf  # noqa: F401
from ._cross_entropy import cross_entropy, nll_loss
from ._divergences import entropy, kl_divergence

__all__ = [
    "cross_entropy",
    "nll_loss",
    "sigmoid",
    "log_sigmoid",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "kl_divergence",
    "entropy",
]
