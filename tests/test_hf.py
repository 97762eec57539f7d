"""softmaxkit.hf against Hugging Face's own logits warpers, and inside generate().

The references are transformers' warpers, run in float64 on the exact values of the
scores (softmaxkit's filters decide in float64), and a tiny GPT-2 built from a config
with random weights (no download).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("softmaxkit.hf")

from transformers.generation import logits_process as lp  # noqa: E402

NEG_INF = -math.inf


def _scores(rows=64, width=40, seed=0, scale=2.5, dtype=torch.float32):
    values = np.random.default_rng(seed).normal(size=(rows, width)) * scale
    return torch.tensor(values).to(dtype)


def _theirs(warper, scores):
    """The kept mask of a Hugging Face warper on the float64 values of ``scores``."""
    return torch.isfinite(warper(None, scores.double()))


PAIRS = [
    (hf.TopKWarper, lp.TopKLogitsWarper, (5,), {}),
    (hf.TopKWarper, lp.TopKLogitsWarper, (3,), {"min_tokens_to_keep": 7}),
    (hf.TopPWarper, lp.TopPLogitsWarper, (0.8,), {}),
    (hf.TopPWarper, lp.TopPLogitsWarper, (0.3,), {"min_tokens_to_keep": 4}),
    (hf.MinPWarper, lp.MinPLogitsWarper, (0.1,), {}),
    (hf.MinPWarper, lp.MinPLogitsWarper, (0.4,), {"min_tokens_to_keep": 3}),
    (hf.TypicalWarper, lp.TypicalLogitsWarper, (0.6,), {}),
    (hf.TypicalWarper, lp.TypicalLogitsWarper, (0.2,), {"min_tokens_to_keep": 5}),
]
PAIR_IDS = [f"{ours.__name__}{args}{kwargs or ''}" for ours, _, args, kwargs in PAIRS]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_each_warper_keeps_what_hugging_face_keeps(pair, dtype):
    ours, theirs, args, kwargs = pair
    scores = _scores(seed=PAIRS.index(pair), dtype=dtype)
    if dtype in (torch.bfloat16, torch.float16):
        # Rounded to few bits, distinct normal values tie: keep the rows whose values differ.
        distinct = torch.tensor([len(set(row.tolist())) == row.numel() for row in scores])
        scores = scores[distinct]
        assert scores.shape[0] > 5
    processed = ours(*args, **kwargs)(None, scores)
    kept = _theirs(theirs(*args, **kwargs), scores)
    assert processed.dtype == scores.dtype
    assert torch.equal(torch.isfinite(processed), kept)
    # Kept scores are returned unchanged.
    assert torch.equal(processed[kept], scores[kept])


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_filter_value_marks_the_removed_entries(pair):
    ours, theirs, args, kwargs = pair
    scores = _scores(rows=16, seed=50 + PAIRS.index(pair))
    processed = ours(*args, filter_value=-1000.0, **kwargs)(None, scores)
    kept = _theirs(theirs(*args, **kwargs), scores)
    assert torch.equal(processed, torch.where(kept, scores, torch.tensor(-1000.0)))


def test_filter_value_in_the_constructor():
    scores = _scores(rows=8, seed=3)
    processed = hf.TopKWarper(4, filter_value=-50.0)(None, scores)
    theirs = lp.TopKLogitsWarper(4, filter_value=-50.0)(None, scores)
    assert torch.equal(processed, theirs)


def test_temperature_divides_within_half_an_ulp():
    scores = _scores(rows=32, width=50, seed=9)
    for temperature in (0.7, 1.3, 3.0, 1e-3):
        processed = hf.TemperatureWarper(temperature)(None, scores)
        assert processed.dtype == torch.float32
        exact = scores.double() / temperature  # within 2^-53 of x / T
        ulp = torch.tensor(np.spacing(np.abs(processed.numpy())).astype(np.float64))
        assert torch.all((processed.double() - exact).abs() <= 0.5 * ulp * (1 + 2.0**-20))


def test_temperature_zero_keeps_the_first_maximum():
    scores = torch.tensor([[1.0, 3.0, 2.0, 3.0], [NEG_INF, -1.0, -2.0, NEG_INF]])
    processed = hf.TemperatureWarper(0.0)(None, scores)
    expected = torch.tensor([[NEG_INF, 0.0, NEG_INF, NEG_INF], [NEG_INF, 0.0, NEG_INF, NEG_INF]])
    assert torch.equal(processed, expected)


def test_ties_at_the_boundary_are_all_kept():
    scores = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    processed = hf.TopKWarper(2)(None, scores)
    assert torch.equal(torch.isfinite(processed), torch.tensor([[True, True, True, True, False]]))
    # Four equally likely entries and top_p = 0.5: two of them reach the mass, and
    # softmaxkit keeps every entry tied with the last one kept; Hugging Face's sort
    # keeps two of the four.
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    processed = hf.TopPWarper(0.5)(None, scores)
    assert torch.isfinite(processed).all()
    theirs = _theirs(lp.TopPLogitsWarper(0.5), scores)
    assert int(theirs.sum()) >= 2 and torch.isfinite(processed)[theirs].all()


def test_masked_entries_stay_removed():
    scores = _scores(rows=8, seed=11)
    scores[:, ::3] = NEG_INF  # as a bad-words processor before the warper leaves them
    processed = hf.TopPWarper(0.9)(None, scores)
    assert not torch.isfinite(processed[:, ::3]).any()
    assert torch.equal(torch.isfinite(processed), _theirs(lp.TopPLogitsWarper(0.9), scores))


def _chain(scores, temperature, top_k, top_p, min_p, min_tokens_to_keep):
    """Hugging Face's warpers in generate()'s order, in float64."""
    scores = scores.double()
    if temperature != 1.0:
        scores = lp.TemperatureLogitsWarper(float(temperature))(None, scores)
    if top_k:
        scores = lp.TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
    if top_p < 1.0:
        scores = lp.TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
    if min_p:
        scores = lp.MinPLogitsWarper(min_p, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
    return scores


CHAINS = [
    dict(temperature=0.7, top_k=8, top_p=0.9, min_p=0.0, min_tokens_to_keep=1),
    dict(temperature=1.5, top_k=0, top_p=0.5, min_p=0.05, min_tokens_to_keep=2),
    dict(temperature=1.0, top_k=20, top_p=1.0, min_p=0.2, min_tokens_to_keep=3),
    dict(temperature=0.4, top_k=3, top_p=0.95, min_p=0.0, min_tokens_to_keep=5),
]


@pytest.mark.parametrize("options", CHAINS)
def test_the_whole_chain_keeps_what_generate_keeps(options):
    scores = _scores(rows=100, width=48, seed=21)
    processed = hf.SoftmaxkitWarper(**options)(None, scores)
    theirs = _chain(scores, **options)
    kept = torch.isfinite(theirs)
    assert torch.equal(torch.isfinite(processed), kept)
    # The kept values are the scores divided by the temperature (the division rounded once).
    assert torch.equal(processed[kept], theirs[kept].float())


def test_order_can_be_changed():
    scores = _scores(rows=50, seed=5)
    processed = hf.SoftmaxkitWarper(top_k=10, top_p=0.5, order=("top_p", "top_k"))(None, scores)
    theirs = lp.TopKLogitsWarper(10)(None, lp.TopPLogitsWarper(0.5)(None, scores.double()))
    assert torch.equal(torch.isfinite(processed), torch.isfinite(theirs))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: hf.TopKWarper(-1), ValueError, "top_k must be >= 0, got -1"),
        (lambda: hf.TopKWarper(2.5), TypeError, "top_k must be an int"),
        (lambda: hf.TopPWarper(0.0), ValueError, r"top_p must be in \(0, 1\], got 0.0"),
        (lambda: hf.TopPWarper(1.5), ValueError, r"top_p must be in \(0, 1\], got 1.5"),
        (lambda: hf.MinPWarper(-0.1), ValueError, r"min_p must be in \[0, 1\], got -0.1"),
        (lambda: hf.TypicalWarper(2.0), ValueError, r"typical_p must be in \(0, 1\], got 2.0"),
        (lambda: hf.TemperatureWarper(-1.0), ValueError, "temperature must be >= 0, got -1.0"),
        (
            lambda: hf.TemperatureWarper(float("nan")),
            ValueError,
            "temperature must be >= 0, got nan",
        ),
        (lambda: hf.TemperatureWarper(np.ones(2)), TypeError, "temperature must be a real number"),
        (
            lambda: hf.TopKWarper(3, min_tokens_to_keep=0),
            ValueError,
            "min_tokens_to_keep must be >= 1, got 0",
        ),
        (
            lambda: hf.TopKWarper(3, filter_value=float("nan")),
            ValueError,
            "filter_value must not be NaN",
        ),
        (
            lambda: hf.TopKWarper(3, filter_value="low"),
            TypeError,
            "filter_value must be a real number",
        ),
        (lambda: hf.SoftmaxkitWarper(top_k=3, order=("top_p",)), ValueError, "top_k is set"),
    ],
)
def test_bad_options_are_refused_at_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_nan_row_is_refused():
    scores = _scores(rows=3, seed=1)
    scores[1, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        hf.TopKWarper(3)(None, scores)


def test_repr_shows_what_is_set():
    assert (
        repr(hf.TopKWarper(5, min_tokens_to_keep=2)) == "TopKWarper(top_k=5, min_tokens_to_keep=2)"
    )
    assert repr(hf.SoftmaxkitWarper(temperature=0.5, top_p=0.9)) == (
        "SoftmaxkitWarper(temperature=0.5, top_p=0.9)"
    )


def test_they_are_logits_processors():
    for cls in (
        hf.SoftmaxkitWarper,
        hf.TemperatureWarper,
        hf.TopKWarper,
        hf.TopPWarper,
        hf.MinPWarper,
        hf.TypicalWarper,
    ):
        assert issubclass(cls, transformers.LogitsProcessor)


# ---------------------------------------------------------------- generate()


@pytest.fixture(scope="module")
def tiny_model():
    config = transformers.GPT2Config(
        vocab_size=64,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=63,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # peaked distributions, so that the filters remove something
        model.transformer.wte.weight.mul_(40.0)
    return model


class _Recorder(transformers.LogitsProcessor):
    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(scores.clone())
        return scores


def _generate(model, processors, **options):
    prompt = torch.tensor([[0, 5, 9, 17], [0, 33, 2, 40]])
    return model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=8,
        pad_token_id=63,
        logits_processor=transformers.LogitsProcessorList(processors),
        **options,
    )


@pytest.mark.parametrize("options", CHAINS)
def test_generate_samples_from_the_kept_sets_of_hugging_face(tiny_model, options):
    before, after = _Recorder(), _Recorder()
    torch.manual_seed(1)
    sequences = _generate(
        tiny_model,
        [before, hf.SoftmaxkitWarper(**options), after],
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
    )
    steps = len(after.seen)
    assert steps == sequences.shape[1] - 4 > 0
    removed_some = False
    for step in range(steps):
        kept = torch.isfinite(_chain(before.seen[step], **options))
        assert torch.equal(torch.isfinite(after.seen[step]), kept)
        token = sequences[:, 4 + step]
        assert kept[torch.arange(2), token].all()  # every drawn token was kept
        removed_some |= bool((~kept).any())
    assert removed_some


def test_temperature_zero_is_greedy_decoding(tiny_model):
    greedy = _generate(tiny_model, [], do_sample=False)
    torch.manual_seed(2)
    sampled = _generate(
        tiny_model, [hf.TemperatureWarper(0.0)], do_sample=True, top_k=0, temperature=1.0
    )
    assert torch.equal(sampled, greedy)


@pytest.mark.parametrize(
    "warper",
    [
        hf.TopKWarper(3),
        hf.TopPWarper(0.5),
        hf.MinPWarper(0.3),
        hf.TypicalWarper(0.4),
        hf.TemperatureWarper(0.8),
    ],
    ids=repr,
)
def test_each_warper_runs_in_generate(tiny_model, warper):
    after = _Recorder()
    torch.manual_seed(3)
    sequences = _generate(tiny_model, [warper, after], do_sample=True, top_k=0, temperature=1.0)
    for step, scores in enumerate(after.seen):
        token = sequences[:, 4 + step]
        assert torch.isfinite(scores[torch.arange(2), token]).all()
