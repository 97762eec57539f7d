"""Drawing indices from logits: temperature, top-k, top-p, min-p, typical-p, Gumbel.

Written once against the array namespace ``xp``; NumPy, PyTorch and JAX arrays are
accepted, and the random numbers come from each library's own generator.

Every filter keeps a set of entries and removes the others (their logit becomes
``-inf``); the filters run in the order given by ``order``, each one on the
probabilities left by the previous ones (renormalized), as Hugging Face's logits
warpers do, and each keeps at least ``min_tokens_to_keep`` entries. The rows are
held as "candidates": once a filter has kept only a few entries of a long row
(``top_k=50`` of 128,256), the rest of the work runs on those entries alone, so no
step sorts the whole vocabulary.

The modules, one concept each:

- ``_options``: the scalar options (checked by ``_lib._validation``) and ``order``;
- ``_rows``: the validated logits as rows, and the candidate entries of each row;
- ``_filters``: the filters and :func:`filter_logits`;
- ``_draw``: :func:`sample` (inverse CDF, Gumbel-max, Gumbel-top-k);
- ``_cdf_search``: the search of the cumulative sums, in two levels for long rows;
- ``_numpy_draws``: NumPy draws through the compiled kernel;
- ``_gumbel``: :func:`gumbel_softmax`.
"""

from __future__ import annotations

from ._draw import sample
from ._filters import filter_logits
from ._gumbel import gumbel_softmax
from ._options import FILTERS  # noqa: F401 (the default order, public)

__all__ = ["sample", "filter_logits", "gumbel_softmax"]
