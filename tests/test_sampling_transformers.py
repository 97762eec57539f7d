"""The kept sets of filter_logits against Hugging Face's logits warpers themselves.

Skipped without ``transformers``. The warpers run in float64 on the exact float64
values of the input (softmaxkit's filters decide in float64 for float32 input too),
in the order softmaxkit is given, each with ``min_tokens_to_keep``; an option at its
neutral value (``top_k=0``, ``top_p=1``, ``typical_p=1``) makes no warper, as in
``generate()``. On tied logits the warpers keep an arbitrary part of the entries tied
at a boundary (their sorts are not stable) where softmaxkit keeps all of them: there
each warper's kept set is completed with the entries tied with its boundary before
the next warper runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_sampling import RANDOM_OPTIONS, _tied_logits, random_logits

import softmaxkit as smk

torch = pytest.importorskip("torch")
logits_process = pytest.importorskip("transformers.generation.logits_process")


def _close_ties(scores, processed, key, *, kept_side):
    """``processed``, with every entry of ``scores`` whose key ties the kept set's boundary."""
    kept = torch.isfinite(processed)
    if kept_side == "largest":
        inf = torch.full_like(key, float("inf"))
        boundary = torch.where(kept, key, inf).amin(dim=-1, keepdim=True)
        tied = key >= boundary
    else:
        boundary = torch.where(kept, key, -torch.full_like(key, float("inf"))).amax(
            dim=-1, keepdim=True
        )
        tied = key <= boundary
    return scores.masked_fill(~(torch.isfinite(scores) & (kept | tied)), float("-inf"))


def _typicality(scores):
    # The key TypicalLogitsWarper sorts by: |-log p - entropy|.
    normalized = torch.nn.functional.log_softmax(scores, dim=-1)
    entropy = -(normalized * torch.exp(normalized)).nansum(-1, keepdim=True)
    return torch.abs(-normalized - entropy)


def hugging_face_logits(logits, *, close_ties, order, min_tokens_to_keep=1, **options):
    scores = torch.tensor(np.asarray(logits, dtype=np.float64))
    least = min_tokens_to_keep
    for name in order:
        value = options.get(name)
        if name == "temperature" and value is not None and value != 1.0:
            scores = logits_process.TemperatureLogitsWarper(float(value))(None, scores)
            continue
        if name == "top_k" and value:
            warper = logits_process.TopKLogitsWarper(top_k=value, min_tokens_to_keep=least)
            key, side = scores, "largest"
        elif name == "top_p" and value is not None and value < 1.0:
            warper = logits_process.TopPLogitsWarper(top_p=value, min_tokens_to_keep=least)
            key, side = scores, "largest"
        elif name == "min_p" and value is not None:
            warper = logits_process.MinPLogitsWarper(min_p=value, min_tokens_to_keep=least)
            key, side = scores, "largest"
        elif name == "typical_p" and value is not None and value < 1.0:
            warper = logits_process.TypicalLogitsWarper(mass=value, min_tokens_to_keep=least)
            key, side = _typicality(scores), "smallest"
        else:
            continue
        processed = warper(None, scores)
        scores = _close_ties(scores, processed, key, kept_side=side) if close_ties else processed
    return scores.numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "tied"])
@pytest.mark.parametrize("number", range(len(RANDOM_OPTIONS)))
def test_kept_sets_are_those_of_the_hugging_face_warpers(number, tied, dtype):
    # Random filters in a random order with a random minimum kept.
    options = RANDOM_OPTIONS[number]
    if tied:
        logits = _tied_logits(300, 48, seed=100 + number).astype(dtype)
    else:
        logits = random_logits(rows=300, width=48, seed=100 + number, scale=2.5).astype(dtype)
    ours = np.isfinite(smk.filter_logits(logits, **options))
    theirs = np.isfinite(hugging_face_logits(logits, close_ties=tied, **options))
    np.testing.assert_array_equal(ours, theirs, err_msg=str(options))


@pytest.mark.parametrize(
    "options",
    [
        {"top_k": 0, "top_p": 1.0, "typical_p": 1.0, "temperature": 0.7},
        {"top_k": 0, "top_p": 0.6, "min_tokens_to_keep": 4},
        {"top_k": 5, "top_p": 1.0, "min_p": 0.2, "min_tokens_to_keep": 9},
    ],
)
def test_neutral_values_are_those_of_generate(options):
    logits = random_logits(rows=100, width=30, seed=7, scale=2.0)
    full = {"order": ("temperature", "top_k", "top_p", "min_p", "typical_p"), **options}
    ours = np.isfinite(smk.filter_logits(logits, **options))
    theirs = np.isfinite(hugging_face_logits(logits, close_ties=False, **full))
    np.testing.assert_array_equal(ours, theirs)
