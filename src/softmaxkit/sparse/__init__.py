"""Sparse alternatives to softmax: sparsemax, 1.5-entmax and alpha-entmax.

Softmax never gives an exact zero. Sparsemax (Martins & Astudillo, "From Softmax
to Sparsemax", ICML 2016) is the Euclidean projection of the scores onto the
probability simplex, and alpha-entmax (Peters, Niculae & Martins, "Sparse
Sequence-to-Sequence Models", ACL 2019) the Tsallis-regularised mapping between the
two: ``entmax(x, alpha)_i = [(alpha - 1) x_i - tau]_+ ** (1 / (alpha - 1))`` with the
threshold ``tau`` chosen so that the row sums to 1. ``alpha -> 1`` approaches
softmax, ``alpha = 2`` is sparsemax. Entries below the threshold get exactly 0.

Written once against the array namespace ``xp``: every library runs this code.
The threshold is found on the largest entries of each row only. For sparsemax and
1.5-entmax it is exact (sort the candidates, closed form); for any other alpha it
is bisection on the candidates. For long rows only the top ``k`` entries are
selected (``np.partition``, ``torch.topk``, ``jax.lax.top_k`` outside ``jit``), and
``k`` is grown when the threshold found shows that the support may be larger, so a
row of 128,256 entries with a small support is never fully sorted. Other libraries,
and JAX under ``jit``, sort the whole row.

float32 input is computed in float64 where the library has it, without converting
the whole array first: the maximum and the candidates are selected in float32
(selection is exact in any dtype) and the threshold is found in float64. The
final map ``max(x - shift, 0) ** (1 / (alpha - 1))`` runs in float64 on one copy
(NumPy), or, for sparsemax and 1.5-entmax on PyTorch, whose mixed-dtype
arithmetic is slow, in float32 with the float64 shift split into two float32
parts (within a few ulp of the float64 result).

Gradients: PyTorch (``torch.autograd.Function``) and JAX (``jax.custom_vjp``) use
the closed-form backward ``dx = gppr * (g - sum(gppr * g) / sum(gppr))`` with
``gppr = p ** (2 - alpha)`` on the support (Peters et al. 2019, Prop. 1); nothing is
differentiated through the sort or the bisection loop. The same formula is
:func:`sparsemax_vjp` and :func:`entmax_vjp` for any library.

The modules, one concept each: ``_rows`` (which mapping, its checked options, the
row layout), ``_projection`` (the thresholds and the forward map), ``_gradients``
(the closed-form backward, its autograd glue and the public VJPs), ``_mappings``
(the public mappings), ``_dask_map`` (Dask arrays, block by block), ``_checks`` (the
checked arguments of the losses) and ``_losses`` (the Fenchel-Young losses). The
figure comparing the mappings is :func:`softmaxkit.plot.sparse` (and
:func:`softmaxkit.plot.draw_sparse` on given axes).
"""

from __future__ import annotations

from ._gradients import entmax_vjp, sparsemax_vjp
from ._losses import entmax15_loss, entmax_loss, sparsemax_loss
from ._mappings import entmax, entmax15, sparsemax
from ._projection import GROWTH, INITIAL_CANDIDATES, PARTIAL_MIN_LENGTH  # noqa: F401

__all__ = [
    "sparsemax",
    "entmax15",
    "entmax",
    "sparsemax_vjp",
    "entmax_vjp",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_loss",
]


def __getattr__(name):
    if name == "plot_sparse":
        raise AttributeError(
            "softmaxkit.sparse.plot_sparse was removed: the figure is softmaxkit.plot.sparse "
            "(a new Figure) or softmaxkit.plot.draw_sparse(ax, logits) on given axes "
            "(`softmax plot sparse -o FILE` from a terminal)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
