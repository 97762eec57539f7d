"""Hugging Face ``generate()`` adapters: softmaxkit's sampling filters as logits processors.

Importing this module imports ``transformers`` (``import softmaxkit`` does not). Each
class is a :class:`transformers.LogitsProcessor`: pass instances to
``model.generate(..., do_sample=True, logits_processor=[...])``. They keep the same
entries as Hugging Face's own warpers (``min_tokens_to_keep`` and ``filter_value``
included), with softmaxkit's rules where those differ:

- entries tied with the last one kept are all kept (Hugging Face's sorts keep an
  arbitrary part of them);
- the filters decide in float64, so a float32 or bfloat16 row is cut where its exact
  probabilities say, not where rounding puts the cut;
- a temperature of 0 keeps only the most likely entry (the lowest index among ties),
  which makes sampling greedy; ``inf`` makes every remaining entry equally likely;
- a row that contains NaN raises :class:`ValueError` instead of sampling garbage.

:class:`SoftmaxkitWarper` runs the whole chain (temperature, top-k, top-p, min-p,
typical-p) in one call, in ``generate()``'s order by default. Leave ``generate()``'s
own ``temperature``/``top_k``/``top_p``/``min_p``/``typical_p`` at their neutral
values when you pass it, or both chains run.

Examples
--------
>>> import torch
>>> from softmaxkit.hf import SoftmaxkitWarper
>>> warper = SoftmaxkitWarper(temperature=0.5, top_k=2)
>>> warper(None, torch.tensor([[1.0, 3.0, 2.0, 0.0]]))
tensor([[-inf, 6., 4., -inf]])
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from transformers import LogitsProcessor

from ._lib._typing import FilterOrder, Int, Real
from ._lib._validation import check_real, check_scalar_temperature
from .sampling import filter_logits

__all__ = [
    "SoftmaxkitWarper",
    "TemperatureWarper",
    "TopKWarper",
    "TopPWarper",
    "MinPWarper",
    "TypicalWarper",
]

#: generate()'s order of the warpers that softmaxkit has.
GENERATE_ORDER = ("temperature", "top_k", "top_p", "min_p", "typical_p")


class SoftmaxkitWarper(LogitsProcessor):
    """The whole sampling chain of ``generate()`` in one logits processor.

    Parameters
    ----------
    temperature : float, default 1.0
        The scores are divided by it; >= 0. ``0`` keeps only the most likely entry.
    top_k : int >= 0, default 0
        Keep the ``top_k`` largest scores (``max(top_k, min_tokens_to_keep)``); ``0``
        means no top-k filter.
    top_p : float in (0, 1], default 1.0
        Nucleus sampling: keep the most likely entries up to this probability mass;
        ``1`` means no top-p filter.
    min_p : float in [0, 1], default 0.0
        Keep the entries whose probability is at least ``min_p`` times the largest;
        ``0`` means no min-p filter.
    typical_p : float in (0, 1], default 1.0
        Locally typical sampling up to this mass; ``1`` means no filter.
    order : tuple of str, default ("temperature", "top_k", "top_p", "min_p", "typical_p")
        The order of the steps (``generate()``'s order by default); every step that is
        set must be named.
    min_tokens_to_keep : int >= 1, default 1
        Each filter keeps at least this many entries, as in Hugging Face.
    filter_value : float, default -inf
        The score given to the removed entries.

    Raises
    ------
    ValueError, TypeError
        At construction, for an option out of range, with the option's name.

    See Also
    --------
    softmaxkit.filter_logits : the function every call runs.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.hf import SoftmaxkitWarper
    >>> scores = torch.tensor([[4.0, 1.0, 0.0, -1.0]])
    >>> SoftmaxkitWarper(top_p=0.5, min_tokens_to_keep=2)(None, scores)
    tensor([[4., 1., -inf, -inf]])
    >>> SoftmaxkitWarper(top_k=1, filter_value=-100.0)(None, scores)
    tensor([[   4., -100., -100., -100.]])
    """

    supports_continuous_batching = True

    def __init__(
        self,
        *,
        temperature: Real = 1.0,
        top_k: Int = 0,
        top_p: Real = 1.0,
        min_p: Real = 0.0,
        typical_p: Real = 1.0,
        order: FilterOrder = GENERATE_ORDER,
        min_tokens_to_keep: Int = 1,
        filter_value: Real = -math.inf,
    ) -> None:
        # One temperature for every row: a number, not an array.
        check_scalar_temperature(temperature)
        self._options = {
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "min_p": min_p,
            "typical_p": typical_p,
            "order": order,
            "min_tokens_to_keep": min_tokens_to_keep,
        }
        self.filter_value = check_real("filter_value", filter_value)
        # filter_logits checks every option with the library's own messages.
        filter_logits(np.zeros(1), **self._options)

    def __call__(self, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        """The processed scores: ``scores / temperature`` where kept, ``filter_value``
        elsewhere (``input_ids`` is not used)."""
        processed = filter_logits(scores, axis=-1, **self._options)
        if self.filter_value != -math.inf:
            processed = torch.where(
                torch.isneginf(processed),
                torch.tensor(self.filter_value, dtype=processed.dtype, device=processed.device),
                processed,
            )
        return processed

    def _shown(self):
        """The options that differ from the constructor's defaults."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(SoftmaxkitWarper.__init__).parameters.items()
            if parameter.default is not parameter.empty
        }
        current = {**self._options, "filter_value": self.filter_value}
        return {k: v for k, v in current.items() if v != defaults[k]}

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self._shown().items())
        return f"{type(self).__name__}({options})"


class TemperatureWarper(SoftmaxkitWarper):
    """Divides the scores by ``temperature`` (>= 0; ``0`` keeps only the most likely
    entry), like ``TemperatureLogitsWarper``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.hf import TemperatureWarper
    >>> TemperatureWarper(2.0)(None, torch.tensor([[1.0, 3.0]]))
    tensor([[0.5000, 1.5000]])
    >>> TemperatureWarper(0.0)(None, torch.tensor([[1.0, 3.0, 3.0]]))
    tensor([[-inf, 0., -inf]])
    """

    def __init__(self, temperature: Real) -> None:
        super().__init__(temperature=temperature)


class TopKWarper(SoftmaxkitWarper):
    """Keeps the ``top_k`` largest scores (and those tied with the last one), like
    ``TopKLogitsWarper``; ``top_k=0`` keeps everything.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.hf import TopKWarper
    >>> TopKWarper(2)(None, torch.tensor([[1.0, 3.0, 2.0, 3.0]]))
    tensor([[-inf, 3., -inf, 3.]])
    """

    def __init__(
        self, top_k: Int, filter_value: Real = -math.inf, min_tokens_to_keep: Int = 1
    ) -> None:
        super().__init__(
            top_k=top_k, min_tokens_to_keep=min_tokens_to_keep, filter_value=filter_value
        )


class TopPWarper(SoftmaxkitWarper):
    """Nucleus sampling: keeps the most likely entries up to the mass ``top_p`` in
    (0, 1], like ``TopPLogitsWarper``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.hf import TopPWarper
    >>> TopPWarper(0.6)(None, torch.tensor([[1.0, 0.5, 0.0]]))
    tensor([[1.0000, 0.5000,   -inf]])
    """

    def __init__(
        self, top_p: Real, filter_value: Real = -math.inf, min_tokens_to_keep: Int = 1
    ) -> None:
        super().__init__(
            top_p=top_p, min_tokens_to_keep=min_tokens_to_keep, filter_value=filter_value
        )


class MinPWarper(SoftmaxkitWarper):
    """Keeps the entries whose probability is at least ``min_p`` (in [0, 1]) times the
    largest, like ``MinPLogitsWarper``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.hf import MinPWarper
    >>> MinPWarper(0.5)(None, torch.tensor([[0.0, -0.5, -1.0]]))
    tensor([[ 0.0000, -0.5000,    -inf]])
    """

    def __init__(
        self, min_p: Real, filter_value: Real = -math.inf, min_tokens_to_keep: Int = 1
    ) -> None:
        super().__init__(
            min_p=min_p, min_tokens_to_keep=min_tokens_to_keep, filter_value=filter_value
        )


class TypicalWarper(SoftmaxkitWarper):
    """Locally typical sampling up to the mass ``mass`` in (0, 1], like
    ``TypicalLogitsWarper`` (whose argument has the same name).

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.hf import TypicalWarper
    >>> TypicalWarper(0.5)(None, torch.tensor([[2.0, 1.0, 0.0, -5.0]]))
    tensor([[2., -inf, -inf, -inf]])
    """

    def __init__(
        self, mass: Real = 0.9, filter_value: Real = -math.inf, min_tokens_to_keep: Int = 1
    ) -> None:
        super().__init__(
            typical_p=mass, min_tokens_to_keep=min_tokens_to_keep, filter_value=filter_value
        )
