"""Tests of softmaxkit.sampling: distributions, allowed sets, edges, errors.

The reference probabilities come from Hugging Face's logits warpers, whose formulas
are written out below in NumPy (float64, with SciPy's softmax); the draws are
compared with them by a chi-square test at a fixed seed and a significance level
of 1e-6, so the tests are deterministic. Where Hugging Face keeps an arbitrary part
of the entries tied at a filter's boundary (its sorts are not stable), the
references keep all of them, as softmaxkit does. test_sampling_transformers.py
compares with the warpers of ``transformers`` themselves.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

import softmaxkit as smk
from softmaxkit.sampling import FILTERS

NEG_INF = -np.inf
ALPHA = 1e-6


# ------------------------------------------------ Hugging Face's warpers, in NumPy


def hf_temperature(scores, temperature):
    return scores / temperature


# Each takes ``keep``, the warper's ``min_tokens_to_keep``.


def hf_top_k(scores, top_k, keep=1):
    # TopKLogitsWarper: k = max(top_k, min_tokens_to_keep); scores < topk(scores, k)[..., -1]
    # are removed.
    top_k = min(max(top_k, keep), scores.shape[-1])
    kth = np.sort(scores, axis=-1)[..., -top_k][..., None]
    return np.where(scores < kth, NEG_INF, scores)


def _scatter_back(sorted_flags, order):
    flags = np.empty_like(sorted_flags)
    np.put_along_axis(flags, order, sorted_flags, axis=-1)
    return flags


def keep_ties(scores, filtered, key, *, kept_side):
    """``filtered``, and every entry of ``scores`` whose ``key`` ties the boundary of the kept set.

    ``kept_side`` is "largest" when the filter keeps the largest keys, "smallest"
    when it keeps the smallest: the boundary is the least (greatest) key kept.
    """
    kept = np.isfinite(filtered)
    if kept_side == "largest":
        boundary = np.min(np.where(kept, key, np.inf), axis=-1, keepdims=True)
        tied = key >= boundary
    else:
        boundary = np.max(np.where(kept, key, -np.inf), axis=-1, keepdims=True)
        tied = key <= boundary
    return np.where(np.isfinite(scores) & (kept | tied), scores, NEG_INF)


def hf_top_p(scores, top_p, keep=1):
    # TopPLogitsWarper: ascending sort, remove while the cumulative mass <= 1 - p,
    # keep the last (most likely) min_tokens_to_keep tokens.
    order = np.argsort(scores, axis=-1, kind="stable")
    sorted_logits = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(scipy.special.softmax(sorted_logits, axis=-1), axis=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -keep:] = False
    filtered = np.where(_scatter_back(remove_sorted, order), NEG_INF, scores)
    return keep_ties(scores, filtered, scores, kept_side="largest")


def hf_min_p(scores, min_p, keep=1):
    # MinPLogitsWarper: probs < min_p * max(probs) are removed, the min_tokens_to_keep
    # most likely tokens kept.
    probs = scipy.special.softmax(scores, axis=-1)
    remove = probs < min_p * probs.max(axis=-1, keepdims=True)
    top = np.argsort(-scores, axis=-1, kind="stable")[..., :keep]
    np.put_along_axis(remove, top, False, axis=-1)
    filtered = np.where(remove, NEG_INF, scores)
    return keep_ties(scores, filtered, scores, kept_side="largest")


def hf_typical(scores, mass, keep=1):
    # TypicalLogitsWarper (Meister et al. 2022); the min_tokens_to_keep kept are the
    # first in the order of typicality.
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = scipy.special.log_softmax(scores, axis=-1)
        p = np.exp(normalized)
        ent = -np.nansum(normalized * p, axis=-1, keepdims=True)
        shifted = np.abs(-normalized - ent)
    order = np.argsort(shifted, axis=-1, kind="stable")
    sorted_scores = np.take_along_axis(shifted, order, axis=-1)
    sorted_logits = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(scipy.special.softmax(sorted_logits, axis=-1), axis=-1)
    last = np.minimum((cumulative < mass).sum(axis=-1), scores.shape[-1] - 1)
    boundary = np.take_along_axis(sorted_scores, last[..., None], axis=-1)
    remove_sorted = sorted_scores > boundary
    remove_sorted[..., :keep] = False
    filtered = np.where(_scatter_back(remove_sorted, order), NEG_INF, scores)
    return keep_ties(scores, filtered, shifted, kept_side="smallest")


HF = {
    "temperature": hf_temperature,
    "top_k": hf_top_k,
    "top_p": hf_top_p,
    "min_p": hf_min_p,
    "typical_p": hf_typical,
}


# The values that mean "no filter" in Hugging Face's generate(): no warper is made.
NEUTRAL = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "typical_p": 1.0}


def reference_logits(logits, order=FILTERS, min_tokens_to_keep=1, **options):
    scores = np.asarray(logits, dtype=np.float64)
    for name in order:
        value = options.get(name)
        if value is None or value == NEUTRAL.get(name):
            continue
        if name == "temperature":
            scores = hf_temperature(scores, value)
        else:
            scores = HF[name](scores, value, min_tokens_to_keep)
    return scores


def reference_probabilities(logits, order=FILTERS, **options):
    scores = reference_logits(logits, order, **options)
    return scipy.special.softmax(scores, axis=-1)


# ------------------------------------------------ chi-square


def assert_follows(draws, probabilities):
    """Draws (rows, n) of indices follow the rows of ``probabilities`` (chi-square, 1e-6)."""
    draws = np.asarray(draws)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rows, width = probabilities.shape
    counts = np.stack([np.bincount(d, minlength=width) for d in draws.reshape(rows, -1)])
    # Never a draw where the exact probability is 0.
    assert counts[probabilities == 0].sum() == 0
    statistic = 0.0
    dof = 0
    for count, p in zip(counts, probabilities, strict=True):
        expected = count.sum() * p / p.sum()
        big = expected >= 5
        observed_cells = list(count[big])
        expected_cells = list(expected[big])
        small = (~big) & (p > 0)
        if small.any():
            observed_cells.append(count[small].sum())
            expected_cells.append(expected[small].sum())
        observed_cells = np.array(observed_cells, dtype=np.float64)
        expected_cells = np.array(expected_cells)
        statistic += float(np.sum((observed_cells - expected_cells) ** 2 / expected_cells))
        dof += len(observed_cells) - 1
    if dof == 0:
        return
    pvalue = scipy.stats.chi2.sf(statistic, dof)
    assert pvalue > ALPHA, f"chi-square {statistic:.1f} on {dof} dof, p = {pvalue:.3g}"


def random_logits(rows=4, width=20, seed=0, scale=1.5):
    return np.random.default_rng(seed).normal(size=(rows, width)) * scale


COMBINATIONS = [
    {},
    {"temperature": 0.7},
    {"temperature": 2.5},
    {"top_k": 5},
    {"top_p": 0.8},
    {"min_p": 0.1},
    {"typical_p": 0.6},
    {"temperature": 0.7, "top_k": 8, "top_p": 0.9},
    {"temperature": 1.3, "top_k": 12, "top_p": 0.95, "min_p": 0.05, "typical_p": 0.9},
    {"top_p": 0.7, "temperature": 3.0, "order": ("top_p", "temperature")},
    {"min_p": 0.2, "top_k": 4, "order": ("min_p", "top_k")},
    {"top_p": 0.3, "min_p": 0.6, "temperature": 0.8, "min_tokens_to_keep": 4},
    {"top_k": 2, "typical_p": 0.3, "min_tokens_to_keep": 5},
    {"top_k": 2, "min_tokens_to_keep": 5},  # NumPy: no filter left, the compiled path
]


def _id(options):
    return (
        ",".join(f"{k}={v}" for k, v in options.items() if k != "order")
        + (",reordered" if "order" in options else "")
        or "plain"
    )


# ------------------------------------------------ distributions


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel"])
@pytest.mark.parametrize("options", COMBINATIONS, ids=_id)
def test_distribution_numpy(options, method):
    logits = random_logits(seed=len(str(options)))
    draws = smk.sample(logits, num_samples=25_000, method=method, rng=12345, **options)
    assert draws.shape == (4, 25_000)
    assert_follows(draws, reference_probabilities(logits, **options))


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel"])
@pytest.mark.parametrize("options", COMBINATIONS[::2], ids=_id)
def test_distribution_torch(options, method):
    torch = pytest.importorskip("torch")
    logits = random_logits(seed=7)
    generator = torch.Generator().manual_seed(2024)
    draws = smk.sample(
        torch.tensor(logits, dtype=torch.float32),
        num_samples=25_000,
        method=method,
        rng=generator,
        **options,
    )
    assert isinstance(draws, torch.Tensor) and draws.dtype == torch.int64
    reference = reference_probabilities(logits.astype(np.float32), **options)
    assert_follows(draws.numpy(), reference)


def test_distribution_and_seeds_jax():
    jax = pytest.importorskip("jax")
    options = {"top_k": 5, "top_p": 0.9, "temperature": 0.8}
    logits = jax.numpy.asarray(random_logits(seed=3))
    key = jax.random.key(5)
    draws = smk.sample(logits, num_samples=25_000, rng=key, **options)
    assert isinstance(draws, jax.Array)
    assert_follows(np.asarray(draws), reference_probabilities(np.asarray(logits), **options))
    # The same key, the same draws; a legacy uint32 key works too.
    again = smk.sample(logits, num_samples=25_000, rng=key, **options)
    np.testing.assert_array_equal(draws, again)
    assert smk.sample(logits, num_samples=25_000, rng=jax.random.PRNGKey(5), **options).shape == (
        4,
        25_000,
    )


@pytest.mark.parametrize("block", [16, 1024])
def test_distribution_long_rows_two_level_search(monkeypatch, block):
    # Long rows with few draws are searched block by block; a small block size
    # runs that path on short rows.
    from softmaxkit.sampling import _cdf_search as search

    monkeypatch.setattr(search, "_BLOCK", block)
    rng = np.random.default_rng(11)
    width = 20 * block + 37
    assert search._block_size(width, 5) > 0
    logits = rng.normal(size=(2, width)) * 2
    logits[:, ::5] = NEG_INF
    logits[1, width // 2 : width - 3] = NEG_INF
    rows = 10_000 if block == 16 else 20
    draws = smk.sample(np.repeat(logits, rows, axis=0), num_samples=5, rng=3)
    draws = draws.reshape(2, rows * 5)
    if block == 16:
        assert_follows(draws, scipy.special.softmax(logits, axis=-1))
    else:
        assert np.isfinite(np.take_along_axis(logits, draws, axis=1)).all()


def test_per_row_temperatures():
    logits = random_logits(rows=4, seed=9)
    temperature = np.array([[0.5], [1.0], [2.0], [np.inf]])
    draws = smk.sample(logits, num_samples=25_000, temperature=temperature, top_p=0.9, rng=1)
    reference = np.stack(
        [
            reference_probabilities(logits[i], temperature=float(temperature[i, 0]), top_p=0.9)
            if np.isfinite(temperature[i, 0])
            else np.full(20, 1 / 20)
            for i in range(4)
        ]
    )
    assert_follows(draws, reference)


def test_per_row_temperature_zero_is_greedy():
    logits = np.array([[1.0, 3.0, 3.0, 2.0], [0.0, 1.0, 2.0, 3.0]])
    draws = smk.sample(logits, num_samples=1000, temperature=np.array([[0.0], [1.0]]), rng=0)
    assert (draws[0] == 1).all()
    assert len(np.unique(draws[1])) == 4


def test_where_mask_distribution():
    logits = random_logits(rows=3, width=10, seed=4)
    where = np.random.default_rng(4).random((3, 10)) < 0.6
    where[:, 0] = True
    draws = smk.sample(logits, num_samples=30_000, where=where, top_k=4, rng=8)
    masked = np.where(where, logits, NEG_INF)
    assert_follows(draws, reference_probabilities(masked, top_k=4))


def test_temperature_inf_is_uniform_over_allowed():
    logits = np.array([[5.0, NEG_INF, -3.0, 0.0, NEG_INF, 100.0]])
    draws = smk.sample(logits, num_samples=60_000, temperature=math.inf, rng=2)
    assert_follows(draws, [[0.25, 0, 0.25, 0.25, 0, 0.25]])


def test_positive_infinity_shares_the_mass():
    logits = np.array([[np.inf, 0.0, np.inf, 50.0]])
    draws = smk.sample(logits, num_samples=20_000, rng=2)
    assert_follows(draws, [[0.5, 0, 0.5, 0]])


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel"])
def test_without_replacement(method):
    logits = np.array([[math.log(q) for q in (0.5, 0.2, 0.15, 0.1, 0.05)] + [NEG_INF]])
    draws = smk.sample(
        np.repeat(logits, 20_000, axis=0), num_samples=3, replace=False, method=method, rng=4
    )
    assert draws.shape == (20_000, 3)
    # Distinct, never the entry of probability 0.
    assert (np.sort(draws, axis=1)[:, 1:] != np.sort(draws, axis=1)[:, :-1]).all()
    assert not (draws == 5).any()
    p = np.exp(logits[0])
    # First draw ~ p; second draw ~ sum_i p_i p_j / (1 - p_i).
    assert_follows(draws[:, :1].T, p[None, :])
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(6) if i != j) for j in range(6)])
    assert_follows(draws[:, 1:2].T, second[None, :])


def test_without_replacement_all_entries_is_a_permutation():
    draws = smk.sample(random_logits(rows=50, width=7), num_samples=7, replace=False, rng=0)
    assert (np.sort(draws, axis=1) == np.arange(7)).all()


@pytest.mark.slow
@pytest.mark.parametrize("options", COMBINATIONS, ids=_id)
def test_distribution_million_draws(options):
    logits = random_logits(rows=2, width=50, seed=21)
    draws = smk.sample(logits, num_samples=500_000, rng=77, **options)
    assert_follows(draws, reference_probabilities(logits, **options))


# ------------------------------------------------ zero probability is never drawn


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_zero_probability_never_drawn(dtype, method):
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        np_dtype = ml_dtypes.bfloat16
    else:
        np_dtype = np.dtype(dtype)
    row = np.array([NEG_INF, 0.0, -60.0, NEG_INF, -12.0, NEG_INF, -0.5, NEG_INF])
    where = np.array([True, True, True, True, True, False, True, False])
    rows = 500 if method == "gumbel" else 2000
    logits = np.tile(row, (rows, 1)).astype(np_dtype)
    draws = smk.sample(logits, num_samples=1000, where=where, method=method, rng=99)
    allowed = np.isfinite(row) & where
    assert draws.size >= 500_000
    assert np.isin(draws, np.flatnonzero(allowed)).all()
    # The filtered-out entries too: top_k=2 keeps entries 1 and 6 only.
    draws = smk.sample(logits, num_samples=1000, top_k=2, method=method, rng=98)
    assert np.isin(draws, [1, 6]).all()


def test_zero_probability_never_drawn_torch_half():
    torch = pytest.importorskip("torch")
    row = torch.tensor([float("-inf"), 0.0, -20.0, float("-inf"), -5.0, float("-inf")])
    for dtype in (torch.float16, torch.bfloat16):
        logits = row.to(dtype).repeat(2000, 1)
        draws = smk.sample(logits, num_samples=1000, rng=torch.Generator().manual_seed(1))
        assert torch.isin(draws, torch.tensor([1, 2, 4])).all()


def test_zero_weight_at_the_end_of_the_cdf_is_not_drawn(monkeypatch):
    # A uniform draw that rounds up to the row total must not land on the
    # trailing entries of weight 0.
    from softmaxkit._lib import _random

    def just_below_one(self, shape, dtype):
        return np.full(shape, 1.0 - 2.0**-53)

    monkeypatch.setattr(_random.Randomness, "uniform", just_below_one)
    short = smk.sample(np.array([0.0, 0.0, -800.0, NEG_INF]), num_samples=4, rng=0)
    assert (short == 1).all()
    long = smk.sample(np.array([0.0] * 3 + [-800.0] * 5000), num_samples=2, rng=0)
    assert (long == 2).all()


def test_tiny_probabilities_follow_their_mass():
    # Entries of probability ~1e-4 are drawn as often as they should be.
    logits = np.array([[0.0, math.log(1e-4), math.log(1e-4), NEG_INF]])
    draws = smk.sample(np.repeat(logits, 100, axis=0), num_samples=10_000, rng=5)
    p = scipy.special.softmax(logits[0])
    assert_follows(draws.reshape(1, -1), p[None, :])


# ------------------------------------------------ allowed sets


FILTER_CASES = [
    {"top_k": 1},
    {"top_k": 7},
    {"top_p": 0.3},
    {"top_p": 0.9},
    {"min_p": 0.05},
    {"min_p": 0.5},
    {"typical_p": 0.2},
    {"typical_p": 0.95},
    {"temperature": 0.5, "top_k": 10, "top_p": 0.8},
    {"temperature": 2.0, "top_p": 0.5, "min_p": 0.1, "typical_p": 0.9},
    {"typical_p": 0.5, "top_k": 20, "order": ("typical_p", "temperature", "top_k")},
    {"top_k": 3, "min_tokens_to_keep": 6},
    {"top_p": 0.3, "min_tokens_to_keep": 5},
    {"min_p": 0.5, "min_tokens_to_keep": 8},
    {"typical_p": 0.2, "min_tokens_to_keep": 10},
    {"top_p": 0.9, "min_tokens_to_keep": 60},  # more than the 50 entries: all are kept
    {
        "temperature": 0.6,
        "top_k": 30,
        "top_p": 0.4,
        "min_p": 0.3,
        "typical_p": 0.5,
        "min_tokens_to_keep": 3,
        "order": ("top_p", "temperature", "typical_p", "min_p", "top_k"),
    },
]


@pytest.mark.parametrize("options", FILTER_CASES, ids=_id)
def test_allowed_set_matches_hugging_face(options):
    logits = random_logits(rows=200, width=50, seed=31, scale=2.0)
    filtered = smk.filter_logits(logits, **options)
    reference = reference_logits(logits, **options)
    np.testing.assert_array_equal(np.isfinite(filtered), np.isfinite(reference))
    kept = np.isfinite(reference)
    np.testing.assert_allclose(filtered[kept], reference[kept], rtol=1e-15)


@pytest.mark.parametrize("options", FILTER_CASES, ids=_id)
def test_sample_draws_only_from_the_allowed_set(options):
    logits = random_logits(rows=200, width=50, seed=32, scale=2.0)
    allowed = np.isfinite(reference_logits(logits, **options))
    draws = smk.sample(logits, num_samples=200, rng=0, **options)
    assert np.take_along_axis(allowed, draws, axis=1).all()


@pytest.mark.parametrize("options", FILTER_CASES, ids=_id)
def test_allowed_sets_agree_across_libraries(options):
    torch = pytest.importorskip("torch")
    logits = random_logits(rows=100, width=40, seed=33, scale=2.0)
    numpy_set = np.isfinite(smk.filter_logits(logits, **options))
    torch_set = torch.isfinite(smk.filter_logits(torch.tensor(logits), **options)).numpy()
    np.testing.assert_array_equal(numpy_set, torch_set)


@pytest.mark.slow  # JAX compiles every operation once: ~15 s on a loaded 2-core machine
@pytest.mark.parametrize("options", FILTER_CASES[8:10], ids=_id)
def test_allowed_sets_agree_with_jax(options):
    logits = random_logits(rows=100, width=40, seed=33, scale=2.0)
    jax = pytest.importorskip("jax")
    jax_logits = jax.numpy.asarray(logits)  # float32 unless x64 is enabled
    jax_set = np.isfinite(np.asarray(smk.filter_logits(jax_logits, **options)))
    np.testing.assert_array_equal(
        jax_set, np.isfinite(smk.filter_logits(np.asarray(jax_logits), **options))
    )


def test_allowed_set_of_a_vocabulary_sized_row():
    # The partial-selection path (no full sort) on a long row.
    logits = random_logits(rows=3, width=40_000, seed=34, scale=4.0)
    for options in ({"top_p": 0.9}, {"top_p": 0.99}, {"top_k": 50, "top_p": 0.9}):
        filtered = smk.filter_logits(logits, **options)
        reference = reference_logits(logits, **options)
        np.testing.assert_array_equal(np.isfinite(filtered), np.isfinite(reference))
        draws = smk.sample(logits, num_samples=50, rng=0, **options)
        assert np.take_along_axis(np.isfinite(reference), draws, axis=1).all()


def test_top_k_keeps_ties_at_the_boundary():
    logits = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 0.0]])
    kept = np.isfinite(smk.filter_logits(logits, top_k=3))
    np.testing.assert_array_equal(kept, [[False, True, True, True, True, False]])
    draws = smk.sample(logits, top_k=3, num_samples=40_000, rng=3)
    assert_follows(draws, scipy.special.softmax(np.where(kept, logits, NEG_INF), axis=-1))


def test_top_k_ties_on_a_wide_row_are_gathered_and_drawn():
    # More ties than k on a long row: the kept entries are gathered by position.
    logits = np.full((2, 400), -3.0)
    logits[0, [5, 77, 150, 151, 390]] = 2.0
    logits[0, 200] = 4.0
    logits[1, [0, 399]] = 1.0
    draws = smk.sample(logits, top_k=3, num_samples=30_000, rng=6)
    expected = np.zeros((2, 400))
    expected[0, [5, 77, 150, 151, 390]] = np.exp(2.0)
    expected[0, 200] = np.exp(4.0)
    expected[1, :] = np.exp(-3.0)
    expected[1, [0, 399]] = np.exp(1.0)
    assert_follows(draws, expected / expected.sum(axis=1, keepdims=True) * (expected > 0))
    kept = np.isfinite(smk.filter_logits(logits, top_k=3))
    assert kept[0].sum() == 6 and kept[1].sum() == 400


def test_top_p_keeps_at_least_one_and_ties():
    logits = np.array([[10.0, 0.0, 0.0, -1.0]])
    np.testing.assert_array_equal(
        np.isfinite(smk.filter_logits(logits, top_p=0.01)), [[True, False, False, False]]
    )
    ties = np.array([[0.0, 0.0, 0.0, -5.0]])
    # 1/3 < 0.5: the second entry is needed, and the third, tied with it, is kept.
    np.testing.assert_array_equal(
        np.isfinite(smk.filter_logits(ties, top_p=0.5)), [[True, True, True, False]]
    )
    np.testing.assert_array_equal(np.isfinite(smk.filter_logits(ties, top_p=1.0)), [[True] * 4])


def test_min_p_relative_to_the_maximum():
    p = np.array([0.5, 0.25, 0.2, 0.05])
    kept = np.isfinite(smk.filter_logits(np.log(p), min_p=0.45))
    np.testing.assert_array_equal(kept, [True, True, False, False])


# ------------------------------------------------ Hugging Face's conventions


@pytest.mark.parametrize(
    "neutral", [{"top_k": 0}, {"top_p": 1.0}, {"min_p": 0.0}, {"typical_p": 1.0}], ids=_id
)
@pytest.mark.parametrize("order", [FILTERS, ("temperature",)], ids=["default", "unnamed"])
def test_neutral_values_mean_no_filter(neutral, order):
    # top_k=0 and top_p=1 (also typical_p=1, min_p=0) are "no filter", as in generate():
    # nothing is removed, and order need not name them.
    logits = random_logits(rows=6, width=30, seed=51)
    logits[2, ::3] = NEG_INF
    for backend in ("numpy", "torch"):
        if backend == "torch":
            torch = pytest.importorskip("torch")
            x = torch.tensor(logits)
        else:
            x = logits
        options = {**neutral, "order": order, "temperature": 0.7}
        filtered = np.asarray(smk.filter_logits(x, **options))
        np.testing.assert_array_equal(filtered, logits / 0.7)
        for method in ("inverse_cdf", "gumbel"):
            plain = smk.sample(x, num_samples=50, temperature=0.7, method=method, rng=3)
            drawn = smk.sample(x, num_samples=50, method=method, rng=3, **options)
            np.testing.assert_array_equal(np.asarray(drawn), np.asarray(plain))
    # With a minimum kept, too.
    kept = np.isfinite(smk.filter_logits(logits, min_tokens_to_keep=40, **neutral))
    np.testing.assert_array_equal(kept, np.isfinite(logits))


MIN_KEPT_CASES = [case for case in FILTER_CASES if "min_tokens_to_keep" in case]


@pytest.mark.parametrize("options", MIN_KEPT_CASES, ids=_id)
def test_min_tokens_to_keep_keeps_at_least_that_many(options):
    logits = random_logits(rows=200, width=50, seed=31, scale=2.0)
    least = options["min_tokens_to_keep"]
    kept = np.isfinite(smk.filter_logits(logits, **options)).sum(axis=1)
    assert (kept >= min(least, 50)).all()
    # The cases are chosen so that the minimum matters.
    alone = {k: v for k, v in options.items() if k != "min_tokens_to_keep"}
    assert (np.isfinite(smk.filter_logits(logits, **alone)).sum(axis=1) < min(least, 50)).any()


def _tied_logits(rows, width, seed):
    """Logits on a grid of 0.5 (many ties), with some -inf entries."""
    rng = np.random.default_rng(seed)
    logits = rng.integers(-8, 3, size=(rows, width)) * 0.5
    logits[rng.random((rows, width)) < 0.1] = NEG_INF
    logits[:, 0] = 1.0  # every row keeps an entry
    return logits


def _random_options(rng, *, transformers=False):
    """A random combination of the filters, in a random order, with a random minimum kept."""
    options = {"min_tokens_to_keep": int(rng.choice([1, 2, 3, 7, 30]))}
    if rng.random() < 0.6:
        options["temperature"] = float(rng.choice([0.4, 0.9, 1.7]))
    if rng.random() < 0.5:
        options["top_k"] = int(rng.integers(1, 25))
    if rng.random() < 0.6:
        options["top_p"] = round(float(rng.uniform(0.05, 0.97)), 3)
    if rng.random() < 0.5:
        options["min_p"] = round(float(rng.uniform(0.01, 0.8)), 3)
    if rng.random() < 0.5:
        options["typical_p"] = round(float(rng.uniform(0.1, 0.95)), 3)
    order = list(FILTERS)
    rng.shuffle(order)
    options["order"] = tuple(order)
    return options


RANDOM_OPTIONS = [_random_options(np.random.default_rng(seed)) for seed in range(40)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "tied"])
def test_allowed_sets_match_the_reference_on_random_options(tied, dtype):
    # Random filters in random orders with a minimum kept, on distinct and on tied
    # logits; float32 input is filtered as its exact float64 values.
    for number, options in enumerate(RANDOM_OPTIONS):
        if tied:
            logits = _tied_logits(150, 40, seed=number).astype(dtype)
        else:
            logits = random_logits(rows=150, width=40, seed=number, scale=2.5).astype(dtype)
        filtered = smk.filter_logits(logits, **options)
        reference = reference_logits(logits.astype(np.float64), **options)
        np.testing.assert_array_equal(
            np.isfinite(filtered), np.isfinite(reference), err_msg=str(options)
        )


def test_min_tokens_to_keep_ranks_by_logit_below_the_float64_range():
    # exp(-800) is 0 in float64: the second entry is kept as the second largest logit,
    # not as "every entry of weight >= 0".
    logits = np.array([[0.0, -800.0, -900.0, -1000.0, NEG_INF]])
    expected = [[True, True, False, False, False]]
    for options in ({"top_p": 0.5}, {"min_p": 0.5}, {"top_k": 1}, {"top_p": 0.5, "min_p": 0.9}):
        kept = np.isfinite(smk.filter_logits(logits, min_tokens_to_keep=2, **options))
        np.testing.assert_array_equal(kept, expected, err_msg=str(options))
    # More than the finite entries: all of them, never an -inf one.
    kept = np.isfinite(smk.filter_logits(logits, top_p=0.5, typical_p=0.1, min_tokens_to_keep=9))
    np.testing.assert_array_equal(kept, [[True, True, True, True, False]])


def test_min_tokens_to_keep_counts_what_the_steps_before_left():
    logits = np.array([[3.0, 2.0, 1.0, 0.0, -1.0]])
    where = np.array([True, False, True, True, True])
    kept = np.isfinite(smk.filter_logits(logits, where=where, top_p=0.1, min_tokens_to_keep=3))
    np.testing.assert_array_equal(kept, [[True, False, True, True, False]])
    # Greedy first: one entry is left, and a later filter cannot bring others back.
    kept = np.isfinite(smk.filter_logits(logits, temperature=0, top_p=0.5, min_tokens_to_keep=3))
    np.testing.assert_array_equal(kept, [[True, False, False, False, False]])
    # Ties with the last one kept are kept.
    ties = np.array([[2.0, 1.0, 1.0, 1.0, 0.0]])
    kept = np.isfinite(smk.filter_logits(ties, top_p=0.01, min_tokens_to_keep=2))
    np.testing.assert_array_equal(kept, [[True, True, True, True, False]])


def test_min_tokens_to_keep_on_torch_and_jax():
    # Both filters that add the largest logits, with a per-row temperature, on wide rows
    # (the rows are gathered into candidates).
    logits = random_logits(rows=8, width=300, seed=52, scale=3.0)
    temperature = np.linspace(0.5, 2.0, 8)[:, None]
    options = {"top_p": 0.2, "min_p": 0.5, "min_tokens_to_keep": 12}
    expected = np.isfinite(smk.filter_logits(logits, temperature=temperature, **options))
    assert (expected.sum(axis=1) == 12).any()
    torch = pytest.importorskip("torch")
    got = smk.filter_logits(torch.tensor(logits), temperature=torch.tensor(temperature), **options)
    np.testing.assert_array_equal(torch.isfinite(got).numpy(), expected)
    draws = smk.sample(torch.tensor(logits), num_samples=300, rng=1, **options)
    allowed = np.isfinite(smk.filter_logits(logits, **options))
    assert np.take_along_axis(allowed, draws.numpy(), axis=1).all()
    jax = pytest.importorskip("jax")
    got = smk.filter_logits(
        jax.numpy.asarray(logits), temperature=jax.numpy.asarray(temperature), **options
    )
    jax_input = np.asarray(jax.numpy.asarray(logits), dtype=np.float64)  # float32 without x64
    reference = smk.filter_logits(jax_input, temperature=temperature, **options)
    np.testing.assert_array_equal(np.isfinite(np.asarray(got)), np.isfinite(reference))


@pytest.mark.parametrize(
    "value, error, message",
    [
        (0, ValueError, "min_tokens_to_keep must be >= 1, got 0"),
        (-2, ValueError, "min_tokens_to_keep must be >= 1, got -2"),
        (2.0, TypeError, "min_tokens_to_keep must be an int, got 2.0"),
        (True, TypeError, "min_tokens_to_keep must be an int, got True"),
        (None, TypeError, "min_tokens_to_keep must be an int, got None"),
    ],
)
def test_bad_min_tokens_to_keep(value, error, message):
    logits = np.array([[0.0, 1.0, 2.0]])
    for function in (smk.filter_logits, functools.partial(smk.sample, rng=0)):
        with pytest.raises(error, match=message):
            function(logits, top_p=0.5, min_tokens_to_keep=value)
        # Checked even when no filter is set.
        with pytest.raises(error, match=message):
            function(logits, min_tokens_to_keep=value)
    # Integers of other kinds are accepted.
    kept = np.isfinite(smk.filter_logits(logits, top_k=1, min_tokens_to_keep=np.int64(2)))
    np.testing.assert_array_equal(kept, [[False, True, True]])


def test_temperature_zero_is_greedy_lowest_index():
    logits = np.array([[0.0, 2.0, 2.0, 1.0], [5.0, 5.0, 5.0, 5.0], [NEG_INF, -1.0, NEG_INF, -1.0]])
    np.testing.assert_array_equal(smk.sample(logits, temperature=0, rng=0), [1, 0, 1])
    draws = smk.sample(logits, temperature=0, num_samples=100, method="gumbel", rng=0)
    assert (draws == np.array([[1], [0], [1]])).all()
    # The lowest index also after a filter has reordered the candidates.
    wide = np.zeros((1, 300))
    wide[0, [250, 17, 120]] = 9.0
    assert smk.sample(wide, top_k=3, temperature=0, order=("top_k", "temperature"), rng=0) == 17


def test_order_changes_the_result():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    first = smk.filter_logits(logits, temperature=10.0, top_p=0.5)
    later = smk.filter_logits(logits, temperature=10.0, top_p=0.5, order=("top_p", "temperature"))
    assert np.isfinite(first).sum() == 2 and np.isfinite(later).sum() == 1


def test_filter_logits_values_and_layout():
    logits = np.array([[1.0, 4.0], [2.0, 8.0], [3.0, 0.0]], dtype=np.float32)
    filtered = smk.filter_logits(logits, axis=0, temperature=2.0, top_k=1)
    assert filtered.dtype == np.float32
    np.testing.assert_array_equal(filtered, [[NEG_INF, NEG_INF], [NEG_INF, 4.0], [1.5, NEG_INF]])
    # A row with no allowed entry stays all -inf in filter_logits.
    np.testing.assert_array_equal(
        smk.filter_logits([[NEG_INF, NEG_INF]], top_p=0.5), [[NEG_INF] * 2]
    )


# ------------------------------------------------ shapes, seeds, libraries


def test_shapes_and_axis():
    logits = random_logits(rows=6, width=5).reshape(2, 3, 5)
    assert smk.sample(logits, rng=0).shape == (2, 3)
    assert smk.sample(logits, num_samples=4, rng=0).shape == (2, 3, 4)
    along_first = smk.sample(np.moveaxis(logits, -1, 0), axis=0, num_samples=4, rng=0)
    assert along_first.shape == (2, 3, 4)
    assert smk.sample([0.0, 1.0], rng=0).shape == ()
    assert smk.sample(np.zeros((0, 4)), rng=0).shape == (0,)
    assert smk.sample(np.zeros((2, 4)), num_samples=0, rng=0).shape == (2, 0)


def test_greedy_along_another_axis():
    logits = np.array([[0.0, 9.0], [5.0, 1.0], [5.0, 2.0]])
    np.testing.assert_array_equal(smk.sample(logits, axis=0, temperature=0, rng=0), [1, 0])


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel"])
def test_same_seed_same_result_numpy(method):
    logits = random_logits(rows=8, width=30)
    first = smk.sample(logits, num_samples=50, top_p=0.9, method=method, rng=42)
    again = smk.sample(logits, num_samples=50, top_p=0.9, method=method, rng=42)
    generator = smk.sample(
        logits, num_samples=50, top_p=0.9, method=method, rng=np.random.default_rng(42)
    )
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, generator)
    other = smk.sample(logits, num_samples=50, top_p=0.9, method=method, rng=43)
    assert (first != other).any()


def test_same_seed_same_result_torch_any_thread_count():
    torch = pytest.importorskip("torch")
    logits = torch.tensor(random_logits(rows=8, width=5000))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            for method in ("inverse_cdf", "gumbel"):
                generator = torch.Generator().manual_seed(7)
                results.append(
                    smk.sample(logits, num_samples=20, top_k=100, method=method, rng=generator)
                )
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[2]) and torch.equal(results[1], results[3])
    assert torch.equal(
        smk.sample(logits, num_samples=20, rng=11), smk.sample(logits, num_samples=20, rng=11)
    )


def test_torch_results_stay_on_the_device_and_library():
    torch = pytest.importorskip("torch")
    logits = torch.tensor(random_logits(rows=3, width=6), dtype=torch.float32)
    draws = smk.sample(logits, num_samples=2, top_k=3, rng=0)
    assert draws.device == logits.device and draws.dtype == torch.int64
    filtered = smk.filter_logits(logits, top_k=3)
    assert isinstance(filtered, torch.Tensor) and filtered.dtype == torch.float32


# ------------------------------------------------ NumPy without filters: one compiled softmax pass

needs_kernel = pytest.mark.skipif(
    not smk._kernels.kernel_available(), reason="the compiled kernels are not built"
)


@needs_kernel
@pytest.mark.parametrize("block", [16, 1024])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_unfiltered_numpy_draws_follow_the_exact_softmax(monkeypatch, block, dtype):
    # Per-row temperatures, a mask, -inf and a non-last axis, against SciPy's float64
    # softmax of the same (rounded) logits; the probabilities come from one kernel pass.
    from softmaxkit.sampling import _cdf_search as search

    monkeypatch.setattr(search, "_BLOCK", block)
    rng = np.random.default_rng(12)
    width = 20 * block + 37
    assert search._block_size(width, 3) > 0
    logits = (rng.normal(size=(3, width)) * 2).astype(dtype)
    logits[:, ::7] = NEG_INF
    where = rng.random((3, width)) < 0.7
    temperature = np.array([[0.7], [1.0], [2.5]])
    rows = 6000 if block == 16 else 40
    before = smk._dispatch.counts["kernel"]
    draws = smk.sample(
        np.repeat(logits, rows, axis=0).T,
        axis=0,
        num_samples=3,
        temperature=np.repeat(temperature, rows, axis=0).T,
        where=np.repeat(where, rows, axis=0).T,
        rng=5,
    )
    assert smk._dispatch.counts["kernel"] > before
    scaled = np.where(where, logits.astype(np.float64), NEG_INF) / temperature
    exact = scipy.special.softmax(scaled, axis=-1)
    draws = draws.reshape(3, rows * 3)
    if block == 16:
        assert_follows(draws, exact)
    else:
        assert (np.take_along_axis(exact, draws, axis=1) > 0).all()


@needs_kernel
@pytest.mark.parametrize(
    "options",
    [
        {"min_p": 0.001, "temperature": 0.7},  # over 50 of 200 kept: the rows stay whole
        {"top_p": 0.5, "temperature": 1.3},  # few kept: the rows are gathered
        {"min_p": 0.05, "temperature": 2.0, "order": ("min_p", "temperature")},
    ],
    ids=_id,
)
def test_filtered_float32_draws_follow_the_exact_softmax(options):
    # After the filters, NumPy draws come from one compiled softmax pass over the
    # kept entries (float32 here); the reference is Hugging Face's warpers in float64.
    logits = random_logits(rows=3, width=200, seed=15, scale=2.0).astype(np.float32)
    before = smk._dispatch.counts["kernel"]
    draws = smk.sample(logits, num_samples=20_000, rng=6, **options)
    assert smk._dispatch.counts["kernel"] > before
    assert_follows(draws, reference_probabilities(logits.astype(np.float64), **options))


@needs_kernel
@pytest.mark.parametrize("width", [40, 5000])
def test_unfiltered_numpy_draw_at_the_top_of_the_cdf_skips_zero_weight(monkeypatch, width):
    # exp(-2000 / 0.9) underflows to 0 even in float64, and masked entries are 0. A draw
    # at the very top of the CDF (a uniform number of 1, the most that rounding in
    # the block search can reach) lands on the last positive entry, in the
    # single-level search (40) and the block search (5000).
    from softmaxkit._lib import _random

    def one(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    monkeypatch.setattr(_random.Randomness, "uniform", one)
    logits = np.full((2, width), -2000.0, dtype=np.float32)
    logits[:, :3] = 0.0
    logits[:, 1] = 5.0
    where = np.ones(width, dtype=bool)
    where[2] = False
    draws = smk.sample(logits, num_samples=2, where=where, temperature=0.9, rng=0)
    assert (draws == 1).all()


@needs_kernel
def test_unfiltered_numpy_draws_do_not_depend_on_the_thread_count():
    logits = random_logits(rows=3, width=100_000, seed=41, scale=3.0).astype(np.float32)
    short = random_logits(rows=301, width=300, seed=42, scale=3.0).astype(np.float32)
    for rows in (logits[:1], logits, short):
        results = []
        for threads in (1, 2, 4):
            with smk.num_threads(threads):
                results.append(smk.sample(rows, num_samples=50, temperature=0.8, rng=13))
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_array_equal(results[0], results[2])


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_unfiltered_numpy_greedy_is_the_lowest_allowed_maximum(dtype):
    rng = np.random.default_rng(14)
    logits = rng.integers(-3, 4, size=(6, 3000)).astype(dtype)  # many tied maxima
    logits[1, 2000] = np.inf
    logits[1, 2500] = np.inf
    logits[2, :] = NEG_INF
    logits[2, 1234] = -7.0
    where = rng.random((6, 3000)) < 0.5
    where[1, 2000] = False
    where[2, 1234] = True
    draws = smk.sample(logits.T, axis=0, temperature=0, where=where.T, num_samples=3, rng=0)
    for row in range(6):
        allowed = np.flatnonzero(where[row])
        best = allowed[logits[row, allowed] == logits[row, allowed].max()][0]
        assert (draws[row] == best).all()
    assert draws.flags.writeable and draws.dtype == np.int64
    assert draws[1, 0] == 2500 and draws[2, 0] == 1234
    empty = where.copy()
    empty[4] = False
    with pytest.raises(ValueError, match="row 4 has no allowed entry"):
        smk.sample(logits, temperature=0, where=empty, rng=0)
    logits[3, 17] = np.nan
    with pytest.raises(ValueError, match="row 3 of logits contains NaN"):
        smk.sample(logits, temperature=0, rng=0)


# ------------------------------------------------ errors


@pytest.mark.parametrize(
    "logits, where, message",
    [
        ([[0.0, 1.0], [NEG_INF, NEG_INF]], None, "row 1 has no allowed entry"),
        ([[0.0, 1.0], [2.0, 3.0]], [[True, True], [False, False]], "row 1 has no allowed entry"),
        ([[[0.0], [1.0]], [[NEG_INF], [1.0]]], None, r"row \(1, 0\) has no allowed entry"),
        ([NEG_INF, NEG_INF], None, "the row has no allowed entry"),
        ([[0.0, np.nan], [0.0, 1.0]], None, "row 0 of logits contains NaN"),
        (np.zeros((2, 0)), None, "row 0 has no entries"),
    ],
)
def test_rows_that_cannot_be_drawn_from(logits, where, message):
    with pytest.raises(ValueError, match=message):
        smk.sample(np.asarray(logits), where=None if where is None else np.asarray(where), rng=0)


def test_no_allowed_entry_torch_names_the_row():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [float("-inf"), float("-inf")]])
    with pytest.raises(ValueError, match="row 2 has no allowed entry"):
        smk.sample(logits, rng=0)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"top_k": -1}, ValueError, "top_k must be >= 0, got -1"),
        ({"top_k": 2.5}, TypeError, "top_k must be an int"),
        ({"top_k": True}, TypeError, "top_k must be an int"),
        ({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\], got 1.5"),
        ({"min_p": -0.1}, ValueError, r"min_p must be in \[0, 1\], got -0.1"),
        ({"typical_p": 0}, ValueError, "typical_p must be in"),
        ({"temperature": -1.0}, ValueError, "temperature must be >= 0, got -1.0"),
        ({"temperature": math.nan}, ValueError, "temperature must be >= 0"),
        ({"order": ("top_k", "nucleus")}, ValueError, "order contains 'nucleus'"),
        ({"order": ("top_k", "top_k")}, ValueError, "repeated"),
        ({"top_p": 0.5, "order": ("top_k",)}, ValueError, "top_p is set, but 'top_p' is missing"),
        ({"order": "top_k"}, TypeError, "order must be a tuple"),
        (
            {"method": "alias"},
            ValueError,
            "method must be one of 'inverse_cdf', 'gumbel', got 'alias'",
        ),
        ({"num_samples": -1}, ValueError, "num_samples must be >= 0, got -1"),
        ({"num_samples": 2.0}, TypeError, "num_samples must be an int"),
        ({"replace": "no"}, TypeError, "replace must be True or False"),
        ({"axis": (0, 1)}, TypeError, "axis must be an int"),
        ({"axis": 3}, Exception, "out of bounds"),
        ({"num_samples": 3, "replace": False, "top_k": 2}, ValueError, "row 0 has only 2 allowed"),
    ],
)
def test_bad_arguments(options, error, message):
    with pytest.raises(error, match=message):
        smk.sample(np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 0.0]]), rng=0, **options)


def test_bad_input():
    with pytest.raises(ValueError, match="at least one dimension"):
        smk.sample(np.float64(1.0), rng=0)
    with pytest.raises(TypeError, match="complex"):
        smk.sample(np.array([1j, 2.0]), rng=0)
    with pytest.raises(ValueError, match="temperature of shape"):
        smk.sample(np.zeros((2, 3)), temperature=np.ones((2, 3)), rng=0)


def test_rng_of_the_wrong_kind():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        smk.sample(np.zeros(3), rng=torch.Generator())
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        smk.sample(np.zeros(3), rng="seed")
    with pytest.raises(TypeError, match="torch.Generator"):
        smk.sample(torch.zeros(3), rng=np.random.default_rng(0))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="rng is a torch.Generator on cpu"):
            smk.sample(torch.zeros(3, device="cuda"), rng=torch.Generator())


def test_jax_requires_a_key():
    jax = pytest.importorskip("jax")
    logits = jax.numpy.zeros(3)
    with pytest.raises(TypeError, match="rng must be a JAX PRNG key"):
        smk.sample(logits)
    with pytest.raises(TypeError, match="rng must be a JAX PRNG key"):
        smk.sample(logits, rng=0)
    with pytest.raises(TypeError, match="rng must be a JAX PRNG key"):
        smk.gumbel_softmax(logits)


def test_unsupported_library():
    array_api_strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="sampling supports NumPy, PyTorch and JAX"):
        smk.sample(array_api_strict.asarray([0.0, 1.0]), rng=0)


# ------------------------------------------------ gumbel_softmax


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_gumbel_softmax_matches_torch_forward_and_gradient(tau, hard):
    torch = pytest.importorskip("torch")
    logits = torch.tensor(random_logits(rows=5, width=7), dtype=torch.float32)
    weights = torch.tensor(random_logits(rows=5, width=7, seed=1), dtype=torch.float32)
    ours_in = logits.clone().requires_grad_(True)
    theirs_in = logits.clone().requires_grad_(True)
    # The same seed gives both the same Gumbel noise.
    ours = smk.gumbel_softmax(ours_in, tau=tau, hard=hard, rng=torch.Generator().manual_seed(5))
    state = torch.get_rng_state()
    try:
        torch.manual_seed(5)
        theirs = torch.nn.functional.gumbel_softmax(theirs_in, tau=tau, hard=hard)
    finally:
        torch.set_rng_state(state)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.isfinite(ours_in.grad).all()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=1e-4, atol=1e-6)


def test_gumbel_softmax_jax_gradient():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    logits = jnp.asarray(random_logits(rows=3, width=6))
    weights = jnp.asarray(random_logits(rows=3, width=6, seed=2))
    key, tau = jax.random.key(0), 0.7

    def loss(x, hard):
        return jnp.sum(weights * smk.gumbel_softmax(x, tau=tau, hard=hard, rng=key))

    soft = np.asarray(smk.gumbel_softmax(logits, tau=tau, rng=key), dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    # d/dx sum(w * softmax((x + g) / tau)) = y * (w - sum(w * y)) / tau; the
    # straight-through estimator passes the same gradient.
    expected = soft * (w - np.sum(w * soft, axis=-1, keepdims=True)) / tau
    for hard in (False, True):
        gradient = np.asarray(jax.grad(loss)(logits, hard), dtype=np.float64)
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
    forward = np.asarray(smk.gumbel_softmax(logits, tau=tau, hard=True, rng=key))
    np.testing.assert_allclose(forward, np.eye(6)[np.argmax(soft, axis=-1)], atol=1e-6)


def test_gumbel_softmax_numpy_argmax_follows_softmax():
    logits = random_logits(rows=1, width=6, seed=8)
    batch = np.repeat(logits, 60_000, axis=0)
    soft = smk.gumbel_softmax(batch, tau=0.5, rng=1)
    np.testing.assert_allclose(soft.sum(axis=-1), 1.0, rtol=1e-12)
    hard = smk.gumbel_softmax(batch, hard=True, rng=1)
    assert set(np.unique(hard)) <= {0.0, 1.0} and (hard.sum(axis=-1) == 1).all()
    # argmax(x + G) ~ softmax(x): the noise is standard Gumbel.
    assert_follows(np.argmax(soft, axis=-1)[None, :], scipy.special.softmax(logits, axis=-1))


def test_gumbel_softmax_axis_and_errors():
    logits = random_logits(rows=4, width=3)
    y = smk.gumbel_softmax(logits, axis=0, hard=True, rng=0)
    np.testing.assert_array_equal(y.sum(axis=0), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        smk.gumbel_softmax(logits, tau=-1.0, rng=0)
    with pytest.raises(TypeError, match="hard must be True or False"):
        smk.gumbel_softmax(logits, hard=1, rng=0)
