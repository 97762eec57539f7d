"""Sampling, the sparse mappings, SoftmaxPolicy and LogSumExpState on the ``xp`` matrix.

Part of issue 15's matrix (see test_public_matrix.py). Every reference is written
here in NumPy float64, without softmaxkit: sparsemax by the sort-based formula of
Martins & Astudillo (2016), 1.5-entmax by its closed sort-based form (Peters,
Niculae & Martins 2019), alpha-entmax by bisection on the threshold, the VJPs by
central differences of those references, the Fenchel-Young losses by their
definition (and the sparsemax loss by Martins & Astudillo's closed form), the
filters by their definitions. Random functions are checked by properties that
could fail: a seed repeats its draw, every draw lies in the allowed set, the greedy
draw is the arg max, and frequencies over a few thousand draws pass a chi-square
bound (at the 1e-6 level, with fixed seeds).

Sampling takes NumPy, PyTorch and JAX only (a TypeError names them for the other
libraries); the sparse mappings and losses take every library but TensorFlow
(docs/sparse.md); LogSumExpState fails on TensorFlow (xfail, see its reason).
"""

from __future__ import annotations

import numpy as np
import pytest
from matrix import Backend, assert_close
from scipy import stats

import softmaxkit as smk
from softmaxkit.policy import exponential

COVERED = (
    "sample",
    "filter_logits",
    "gumbel_softmax",
    "sparsemax",
    "entmax15",
    "entmax",
    "sparsemax_vjp",
    "entmax_vjp",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_loss",
    "SoftmaxPolicy",
    "LogSumExpState",
)

SAMPLING = pytest.mark.xp_backends(
    Backend.NUMPY, Backend.NUMPY_GENERIC, Backend.NUMPY_READONLY, Backend.TORCH, Backend.JAX
)
NO_SAMPLING = pytest.mark.xp_backends(Backend.ARRAY_API_STRICT, Backend.DASK, Backend.TENSORFLOW)
NOT_TENSORFLOW_SPARSE = pytest.mark.skip_xp_backend(
    Backend.TENSORFLOW,
    reason="the sparse mappings do not take TensorFlow (docs/sparse.md lists NumPy, PyTorch, "
    "JAX, array_api_strict and Dask); they raise a clear TypeError "
    "(test_public_matrix.py::test_tensorflow_refused)",
)
DTYPES = pytest.mark.parametrize("dtype", ["float32", "float64"])

# Exactly representable in float32, so that the float64 references hold for both dtypes;
# no entry sits on a kink of the sparse mappings (checked by _assert_off_kinks).
X = np.array(
    [[1.0, -2.0, 3.5, 0.25, 3.0], [-3.0, 4.0, 3.75, -0.5, 2.5], [0.5, 0.25, 0.0, 0.75, -1.0]]
)
# A tie at the maximum of the second row (greedy takes the lower index). No row sits
# near a top-p or min-p boundary (by 0.01 at least) in the cases below.
LOGITS = np.array([[1.0, 0.0, -1.0, 2.0, 0.5], [0.25, 1.5, 1.5, 0.0, -2.0]])
# Many independent rows: the rows of LOGITS in turn (one shape for every such test, which
# JAX compiles once).
ROWS = np.tile(LOGITS, (2000, 1))
DRAWS = 4000
CHI2_LEVEL = 1e-6


def _rng(xp, seed):
    if xp.backend is Backend.JAX:
        import jax

        return jax.random.key(seed)
    return seed


def _tolerance(dtype, exact=1e-12):
    return 2e-6 if dtype == "float32" else exact


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------- references


def sparsemax_ref(z):
    """Martins & Astudillo (2016): sort descending, the support size k(z), tau, max(z - tau, 0)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.zeros_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row = z[index]
        s = np.sort(row[np.isfinite(row)])[::-1]
        k = np.arange(1, s.size + 1)
        total = np.cumsum(s)
        size = k[1 + k * s > total].max()
        tau = (total[size - 1] - 1) / size
        out[index] = np.maximum(row - tau, 0.0)
    return out


def sparsemax_tau(z):
    s = np.sort(z)[::-1]
    k = np.arange(1, s.size + 1)
    total = np.cumsum(s)
    size = k[1 + k * s > total].max()
    return (total[size - 1] - 1) / size


def entmax15_ref(z):
    """Peters et al. (2019), the sort-based 1.5-entmax: ``[z/2 - tau]_+ ** 2``."""
    x = np.asarray(z, dtype=np.float64) / 2
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape[:-1]):
        row = x[index]
        s = np.sort(row[np.isfinite(row)])[::-1]
        k = np.arange(1, s.size + 1)
        mean = np.cumsum(s) / k
        mean_sq = np.cumsum(s * s) / k
        delta = (1 - k * (mean_sq - mean**2)) / k
        tau = mean - np.sqrt(np.maximum(delta, 0.0))
        size = k[tau <= s].max()
        out[index] = np.maximum(row - tau[size - 1], 0.0) ** 2
    return out


def entmax_ref(z, alpha):
    """alpha-entmax by bisection on tau: ``sum [(alpha-1) z - tau]_+^(1/(alpha-1)) = 1``."""
    if alpha == 1.0:
        return _softmax(z)
    x = (alpha - 1) * np.asarray(z, dtype=np.float64)
    power = 1 / (alpha - 1)
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape[:-1]):
        row = x[index]
        top = row[np.isfinite(row)].max()
        low, high = top - 1.0, top  # mass >= 1 at low, 0 at high
        for _ in range(200):
            mid = (low + high) / 2
            if np.sum(np.maximum(row - mid, 0.0) ** power) >= 1:
                low = mid
            else:
                high = mid
        p = np.maximum(row - low, 0.0) ** power
        out[index] = p / p.sum()
    return out


def tsallis(p, alpha):
    if alpha == 1.0:
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return (1 - np.sum(p**alpha, axis=-1)) / (alpha * (alpha - 1))


def fenchel_young_ref(z, target, alpha):
    """``Omega*(z) - z_y`` with ``Omega*(z) = <p, z> + H_alpha(p)``, ``p`` the mapping of ``z``."""
    p = entmax_ref(z, alpha) if alpha != 1.5 else entmax15_ref(z)
    z_y = np.take_along_axis(z, target[:, None], axis=1)[:, 0]
    return tsallis(p, alpha) + np.sum(p * z, axis=-1) - z_y


def sparsemax_loss_ref(z, target):
    """Martins & Astudillo (2016), eq. 19: ``-z_k + 1/2 sum_{j in S} (z_j^2 - tau^2) + 1/2``."""
    out = np.empty(z.shape[0])
    for i, row in enumerate(z):
        tau = sparsemax_tau(row)
        support = row > tau
        out[i] = -row[target[i]] + 0.5 * np.sum(row[support] ** 2 - tau**2) + 0.5
    return out


def vjp_fd(function, x, g, h=1e-6):
    """``g . d function(x) / dx_i`` by central differences, per row."""
    grad = np.zeros_like(x)
    for i in range(x.shape[-1]):
        step = np.zeros_like(x)
        step[..., i] = h
        grad[..., i] = np.sum(g * (function(x + step) - function(x - step)), axis=-1) / (2 * h)
    return grad


def _assert_off_kinks(z, alpha):
    """The references are smooth at ``z``: no entry within 1e-3 of the threshold."""
    x = (alpha - 1) * z
    p = entmax_ref(z, alpha)
    power = alpha - 1
    for row, prob in zip(x, p, strict=True):
        on = prob > 0
        tau = row[on][0] - prob[on][0] ** power
        assert np.min(np.abs(row - tau)) > 1e-3


def test_the_references_agree():
    """The three mapping references, and the two sparsemax loss references, agree."""
    for alpha in (1.5, 2.0):
        _assert_off_kinks(X, alpha)
    np.testing.assert_allclose(entmax_ref(X, 2.0), sparsemax_ref(X), atol=1e-14)
    np.testing.assert_allclose(entmax_ref(X, 1.5), entmax15_ref(X), atol=1e-14)
    target = np.array([2, 1, 3])
    np.testing.assert_allclose(
        fenchel_young_ref(X, target, 2.0), sparsemax_loss_ref(X, target), atol=1e-14
    )
    np.testing.assert_allclose(sparsemax_ref(X).sum(-1), 1.0, rtol=1e-15)


# ------------------------------------------------------------------------- sampling


def _chi2_ok(draws, p):
    """Pearson's chi-square of the draws (a 1-D array of indices) against ``p``."""
    n = draws.size
    counts = np.bincount(draws, minlength=p.size)
    assert np.all(counts[p == 0] == 0), (counts, p)
    on = p > 0
    expected = n * p[on]
    statistic = np.sum((counts[on] - expected) ** 2 / expected)
    bound = stats.chi2.ppf(1 - CHI2_LEVEL, df=max(1, on.sum() - 1))
    assert statistic < bound, (statistic, bound, counts, expected)


def _top_k_ref(z, k):
    kth = np.sort(z, axis=-1)[..., -k][..., None]
    return np.where(z >= kth, z, -np.inf)


def _top_p_ref(z, mass):
    """The smallest set of most likely entries whose probability reaches ``mass``."""
    out = np.full_like(z, -np.inf)
    p = _softmax(z)
    for index in np.ndindex(z.shape[:-1]):
        order = np.argsort(-p[index], kind="stable")
        before = np.concatenate([[0.0], np.cumsum(p[index][order])[:-1]])
        count = int(np.sum(before < mass))
        keep = p[index] >= p[index][order][count - 1]
        out[index] = np.where(keep, z[index], -np.inf)
    return out


def _min_p_ref(z, fraction):
    p = _softmax(z)
    return np.where(p >= fraction * p.max(axis=-1, keepdims=True), z, -np.inf)


@SAMPLING
@DTYPES
@pytest.mark.parametrize(
    ("options", "reference"),
    [
        ({"top_k": 3}, lambda z: _top_k_ref(z, 3)),
        ({"top_k": 2, "temperature": 0.5}, lambda z: _top_k_ref(z / 0.5, 2)),
        ({"top_p": 0.7}, lambda z: _top_p_ref(z, 0.7)),
        ({"top_p": 0.9, "temperature": 2.0}, lambda z: _top_p_ref(z / 2.0, 0.9)),
        ({"min_p": 0.3}, lambda z: _min_p_ref(z, 0.3)),
    ],
    ids=["top_k", "top_k_temperature", "top_p", "top_p_temperature", "min_p"],
)
def test_filter_logits(xp, dtype, options, reference):
    x = xp.asarray(LOGITS, dtype=dtype)
    result = smk.filter_logits(x, **options)
    assert_close(result, reference(LOGITS), xp, rtol=_tolerance(dtype), dtype=dtype, like=x)


@SAMPLING
@DTYPES
def test_filter_logits_where_and_axis(xp, dtype):
    mask = np.array([[True, False, True, True, True], [True, True, False, True, False]])
    x = xp.asarray(LOGITS.T, dtype=dtype)
    result = smk.filter_logits(x, axis=0, top_k=2, where=xp.asarray(mask.T))
    expected = _top_k_ref(np.where(mask, LOGITS, -np.inf), 2).T
    assert_close(result, expected, xp, rtol=_tolerance(dtype), dtype=dtype, like=x)


@SAMPLING
@DTYPES
def test_sample_greedy_is_the_argmax(xp, dtype):
    x = xp.asarray(LOGITS, dtype=dtype)
    expected = np.array([3, 1])  # the tie of the second row: the lowest index
    assert_close(smk.sample(x, temperature=0, rng=_rng(xp, 0)), expected, xp, dtype="int64",
                 like=x)
    drawn = smk.sample(x, temperature=0, num_samples=DRAWS, rng=_rng(xp, 1))
    assert_close(drawn, np.repeat(expected[:, None], DRAWS, axis=1), xp, dtype="int64")


@SAMPLING
@DTYPES
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, _softmax),
        ({"method": "gumbel"}, _softmax),
        ({"temperature": 0.7, "top_k": 3}, lambda z: _softmax(_top_k_ref(z / 0.7, 3))),
        ({"top_p": 0.8}, lambda z: _softmax(_top_p_ref(z, 0.8))),
    ],
    ids=["inverse_cdf", "gumbel", "temperature_top_k", "top_p"],
)
def test_sample_frequencies_and_seeds(xp, dtype, options, expected):
    x = xp.asarray(LOGITS, dtype=dtype)
    drawn = smk.sample(x, num_samples=DRAWS, rng=_rng(xp, 11), **options)
    assert_close(drawn, xp.to_numpy(drawn), xp, dtype="int64", like=x)  # library, dtype
    draws = xp.to_numpy(drawn)
    assert draws.shape == (2, DRAWS)
    p = expected(LOGITS)
    for row in range(2):
        _chi2_ok(draws[row], p[row])  # no draw outside the kept set, and the frequencies
    # The same seed repeats the draws; another seed gives others.
    again = smk.sample(x, num_samples=DRAWS, rng=_rng(xp, 11), **options)
    np.testing.assert_array_equal(xp.to_numpy(again), draws)
    other = smk.sample(x, num_samples=DRAWS, rng=_rng(xp, 12), **options)
    assert not np.array_equal(xp.to_numpy(other), draws)


@SAMPLING
@DTYPES
def test_sample_without_replacement(xp, dtype):
    x = xp.asarray(ROWS, dtype=dtype)
    drawn = xp.to_numpy(smk.sample(x, num_samples=3, replace=False, rng=_rng(xp, 5)))
    assert drawn.shape == (ROWS.shape[0], 3)
    assert all(len(set(row)) == 3 for row in drawn)
    p = _softmax(LOGITS)
    for row in range(2):
        _chi2_ok(drawn[row::2, 0], p[row])  # the first draw follows p
    again = smk.sample(x, num_samples=3, replace=False, rng=_rng(xp, 5))
    np.testing.assert_array_equal(xp.to_numpy(again), drawn)
    # top_k=3 with 3 distinct draws: a permutation of the top-3 set.
    top = xp.to_numpy(smk.sample(x, num_samples=3, replace=False, top_k=3, rng=_rng(xp, 6)))
    for row in range(2):
        kept = set(np.argsort(LOGITS[row], kind="stable")[-3:])
        assert all(set(draw) == kept for draw in top[row::2])


@SAMPLING
@DTYPES
def test_sample_axis_and_where(xp, dtype):
    mask = np.array([[True, False, True, False, True], [False, True, True, True, True]])
    x = xp.asarray(LOGITS.T, dtype=dtype)
    drawn = smk.sample(x, axis=0, num_samples=DRAWS, where=xp.asarray(mask.T), rng=_rng(xp, 3))
    expected = _softmax(np.where(mask, LOGITS, -np.inf))
    for row in range(2):
        _chi2_ok(xp.to_numpy(drawn)[row], expected[row])


@NO_SAMPLING
@pytest.mark.parametrize(
    "call",
    [
        lambda x: smk.sample(x, rng=0),
        lambda x: smk.filter_logits(x, top_k=2),
        lambda x: smk.gumbel_softmax(x, rng=0),
        lambda x: smk.SoftmaxPolicy().select(x, rng=0),
    ],
    ids=["sample", "filter_logits", "gumbel_softmax", "SoftmaxPolicy.select"],
)
def test_sampling_refuses_other_libraries(xp, call):
    with pytest.raises(TypeError, match="sampling supports NumPy, PyTorch and JAX arrays"):
        call(xp.asarray(LOGITS))


@SAMPLING
@DTYPES
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_gumbel_softmax(xp, dtype, tau):
    x = xp.asarray(LOGITS, dtype=dtype)
    y = smk.gumbel_softmax(x, tau=tau, rng=_rng(xp, 4))
    soft = xp.to_numpy(y).astype(np.float64)
    assert xp.is_native(y) and str(y.dtype).endswith(dtype)
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=_tolerance(dtype))
    assert np.all(soft > 0)
    # The same seed gives the same noise G: tau * log(y) - z is G plus a constant per row,
    # whatever the logits.
    shifted = LOGITS + np.array([[0.0, 1.0, -2.0, 0.5, 0.25]])
    y2 = xp.to_numpy(smk.gumbel_softmax(xp.asarray(shifted, dtype=dtype), tau=tau, rng=_rng(xp, 4)))
    difference = tau * (np.log(soft) - np.log(y2.astype(np.float64))) - (LOGITS - shifted)
    np.testing.assert_allclose(
        difference - difference[:, :1], 0.0, atol=50 * _tolerance(dtype, 1e-13)
    )
    # hard: the one-hot vector of the soft sample's arg max (same seed, same noise).
    hard = smk.gumbel_softmax(x, tau=tau, hard=True, rng=_rng(xp, 4))
    assert_close(hard, np.eye(5)[np.argmax(soft, axis=-1)], xp, dtype=dtype, like=x)


@SAMPLING
@DTYPES
def test_gumbel_softmax_argmax_frequencies(xp, dtype):
    """The Gumbel-max trick: the arg max of the hard sample is drawn from softmax(z)."""
    x = xp.asarray(ROWS, dtype=dtype)
    hard = xp.to_numpy(smk.gumbel_softmax(x, tau=0.3, hard=True, rng=_rng(xp, 9)))
    np.testing.assert_array_equal(hard.sum(-1), 1.0)
    p = _softmax(LOGITS)
    for row in range(2):
        _chi2_ok(np.argmax(hard[row::2], axis=-1), p[row])


@pytest.mark.xp_backends(Backend.TORCH)
@DTYPES
def test_gumbel_softmax_draws_as_torch(xp, dtype):
    """Documented: for PyTorch the noise is that of torch.nn.functional.gumbel_softmax."""
    import torch

    x = xp.asarray(LOGITS, dtype=dtype)
    with torch.random.fork_rng():
        torch.manual_seed(21)
        expected = torch.nn.functional.gumbel_softmax(x, tau=0.5).double().numpy()
    y = smk.gumbel_softmax(x, tau=0.5, rng=21)
    assert_close(y, expected, xp, rtol=_tolerance(dtype, 1e-12), atol=1e-7, dtype=dtype, like=x)


# -------------------------------------------------------------- the sparse mappings

MAPPINGS = {
    "sparsemax": (smk.sparsemax, sparsemax_ref),
    "entmax15": (smk.entmax15, entmax15_ref),
}


@NOT_TENSORFLOW_SPARSE
@DTYPES
@pytest.mark.parametrize("name", list(MAPPINGS))
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sort_based_mappings(xp, dtype, name, temperature):
    function, reference = MAPPINGS[name]
    x = xp.asarray(X, dtype=dtype)
    result = function(x, temperature=temperature)
    assert_close(result, reference(X / temperature), xp, rtol=_tolerance(dtype), atol=1e-7,
                 dtype=dtype, like=x)


@NOT_TENSORFLOW_SPARSE
@DTYPES
@pytest.mark.parametrize("name", list(MAPPINGS))
def test_sort_based_mappings_axis_and_where(xp, dtype, name):
    function, reference = MAPPINGS[name]
    mask = np.array([[True, True, False, True, True], [True, False, True, True, False],
                     [False, True, True, True, True]])
    x = xp.asarray(X.T, dtype=dtype)
    result = function(x, axis=0, where=xp.asarray(mask.T))
    expected = reference(np.where(mask, X, -np.inf)).T
    assert_close(result, expected, xp, rtol=_tolerance(dtype), atol=1e-7, dtype=dtype, like=x)


@NOT_TENSORFLOW_SPARSE
@DTYPES
@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0, 3.0])
def test_entmax_bisection(xp, dtype, alpha):
    x = xp.asarray(X, dtype=dtype)
    result = smk.entmax(x, alpha=alpha)
    assert_close(result, entmax_ref(X, alpha), xp, rtol=_tolerance(dtype, 1e-9), atol=1e-9,
                 dtype=dtype, like=x)
    if alpha == 1.25:
        scaled = smk.entmax(x, alpha=alpha, temperature=2.0)
        assert_close(scaled, entmax_ref(X / 2.0, alpha), xp, rtol=_tolerance(dtype, 1e-9),
                     atol=1e-9, dtype=dtype, like=x)


@NOT_TENSORFLOW_SPARSE
@DTYPES
@pytest.mark.parametrize(
    ("alpha", "reference", "temperature"),
    [(2.0, sparsemax_ref, 2.0), (1.5, entmax15_ref, 1.0), (1.3, lambda z: entmax_ref(z, 1.3), 0.5)],
    ids=["sparsemax", "entmax15", "entmax_1.3"],
)
def test_vjps_match_finite_differences(xp, dtype, alpha, reference, temperature):
    rng = np.random.default_rng(0)
    g = np.round(rng.normal(size=X.shape), 3)
    y = reference(X / temperature)
    expected = vjp_fd(lambda z: reference(z / temperature), X, g)
    y_in, g_in = xp.asarray(y, dtype=dtype), xp.asarray(g, dtype=dtype)
    if alpha == 2.0:
        result = smk.sparsemax_vjp(y_in, g_in, temperature=temperature)
    else:
        result = smk.entmax_vjp(y_in, g_in, alpha=alpha, temperature=temperature)
    # The differences are accurate to about 1e-9; float32 y and g round at 6e-8.
    atol = 1e-5 if dtype == "float32" else 1e-8
    assert_close(result, expected, xp, atol=atol, dtype=dtype, like=y_in)
    if alpha == 2.0:  # sparsemax_vjp is also entmax_vjp at alpha 2
        same = smk.entmax_vjp(y_in, g_in, alpha=2.0, temperature=temperature)
        assert_close(same, expected, xp, atol=atol, dtype=dtype)


# ------------------------------------------------------------ the Fenchel-Young losses

TARGET = np.array([2, 0, 3])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.25])


def _loss_ref(name, z, target):
    if name == "sparsemax_loss":
        return sparsemax_loss_ref(z, target)
    if name == "entmax15_loss":
        return fenchel_young_ref(z, target, 1.5)
    return fenchel_young_ref(z, target, 1.3)


LOSSES = {
    "sparsemax_loss": smk.sparsemax_loss,
    "entmax15_loss": smk.entmax15_loss,
    "entmax_loss": lambda *a, **k: smk.entmax_loss(*a, alpha=1.3, **k),
}


@NOT_TENSORFLOW_SPARSE
@DTYPES
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses(xp, dtype, name):
    loss = LOSSES[name]
    x, target = xp.asarray(X, dtype=dtype), xp.asarray(TARGET, dtype="int64")
    per_sample = _loss_ref(name, X, TARGET)
    rtol = _tolerance(dtype, 1e-9)
    assert_close(loss(x, target, reduction="none"), per_sample, xp, rtol=rtol, atol=1e-7,
                 dtype=dtype, like=x)
    # weight and ignore_index: sum(w_y l) / sum(w_y) over the targets not ignored.
    ignored = xp.asarray(np.array([2, -100, 3]), dtype="int64")
    w = WEIGHT[[2, 3]]
    scalars = {
        "mean": (loss(x, target), per_sample.mean()),
        "weighted": (
            loss(x, ignored, weight=xp.asarray(WEIGHT, dtype=dtype)),
            (w * per_sample[[0, 2]]).sum() / w.sum(),
        ),
        "sum": (
            loss(x, target, reduction="sum", temperature=2.0),
            _loss_ref(name, X / 2.0, TARGET).sum(),
        ),
    }
    for kind, (result, _) in scalars.items():
        assert xp.is_native(result) and tuple(result.shape) == (), kind  # a 0-d array
    # One array of the three (one computation for Dask).
    stacked = xp.namespace.stack([result for result, _ in scalars.values()])
    expected = np.array([value for _, value in scalars.values()])
    assert_close(stacked, expected, xp, rtol=rtol, dtype=dtype, like=x)


@NOT_TENSORFLOW_SPARSE
@DTYPES
def test_entmax_loss_alpha_2_is_the_sparsemax_loss(xp, dtype):
    x, target = xp.asarray(X, dtype=dtype), xp.asarray(TARGET, dtype="int64")
    result = smk.entmax_loss(x, target, alpha=2.0, reduction="none")
    assert_close(result, sparsemax_loss_ref(X, TARGET), xp, rtol=_tolerance(dtype, 1e-9),
                 atol=1e-7, dtype=dtype, like=x)


# ------------------------------------------------------------------- SoftmaxPolicy


@DTYPES
def test_policy_probabilities(xp, dtype):
    x = xp.asarray(LOGITS, dtype=dtype)
    policy = smk.SoftmaxPolicy(temperature=2.0)
    assert_close(policy.probabilities(x), _softmax(LOGITS / 2.0), xp, rtol=_tolerance(dtype),
                 dtype=dtype, like=x)
    mask = np.array([[True, False, True, True, True], [False, True, True, True, False]])
    masked = policy.probabilities(x, where=xp.asarray(mask))
    expected = _softmax(np.where(mask, LOGITS, -np.inf) / 2.0)
    assert_close(masked, expected, xp, rtol=_tolerance(dtype), dtype=dtype, like=x)


@SAMPLING
@DTYPES
def test_policy_select_follows_the_schedule(xp, dtype):
    x = xp.asarray(ROWS, dtype=dtype)
    policy = smk.SoftmaxPolicy(temperature=2.0, schedule=exponential(decay=0.5, floor=0.1))
    first = policy.select(x, rng=_rng(xp, 13))
    assert_close(first, xp.to_numpy(first), xp, dtype="int64", like=x)  # library, dtype
    assert tuple(first.shape) == (ROWS.shape[0],)
    hot = _softmax(LOGITS / 2.0)
    for row in range(2):
        _chi2_ok(xp.to_numpy(first)[row::2], hot[row])
    # One step later the temperature is 1.0: the probabilities and the draws follow it.
    assert policy.step == 1 and policy.temperature == 1.0
    assert_close(policy.probabilities(x[:2]), _softmax(LOGITS), xp, rtol=_tolerance(dtype),
                 dtype=dtype)
    second = xp.to_numpy(policy.select(x, rng=_rng(xp, 14)))
    for row in range(2):
        _chi2_ok(second[row::2], _softmax(LOGITS)[row])
    greedy = smk.SoftmaxPolicy(temperature=0.0).select(x, rng=_rng(xp, 0))
    assert_close(greedy, np.argmax(ROWS, axis=-1), xp, dtype="int64")


# ------------------------------------------------------------------ LogSumExpState

STATE_TF = pytest.mark.xfail_xp_backend(
    Backend.TENSORFLOW,
    reason="LogSumExpState calls xp.all and xp.concat, which the TensorFlow adapter lacks "
    "(a clear TypeError), although softmax and logsumexp take TensorFlow",
)


def _log_softmax_ref(z):
    """``z - logsumexp(z)`` per row, in the log1p form (exact near the maximum)."""
    s = z - z.max(axis=-1, keepdims=True)
    rest = np.exp(s)
    rest[np.arange(z.shape[0]), np.argmax(z, axis=-1)] = 0.0
    return s - np.log1p(rest.sum(axis=-1, keepdims=True))


@STATE_TF
@DTYPES
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_logsumexp_state(xp, dtype, temperature):
    z = np.concatenate([LOGITS * 8, [[-30.0, 40.0, 39.5, 0.0, 1.0]]])
    x = xp.asarray(z, dtype=dtype)
    blocks = [x[:, :2], x[:, 2:]]
    state = smk.LogSumExpState(temperature=temperature)
    for block in blocks:
        assert state.update(block) is state
    log_p = _log_softmax_ref(z / temperature)
    expected = z.max(axis=-1) / temperature - log_p.max(axis=-1)
    rtol = _tolerance(dtype, 1e-14)
    assert_close(state.logsumexp(), expected, xp, rtol=rtol, dtype=dtype, like=x)
    assert tuple(state.logsumexp(keepdims=True).shape) == (3, 1)
    concat = xp.namespace.concat
    p = concat([state.normalize(block) for block in blocks], axis=-1)
    assert_close(p, np.exp(log_p), xp, rtol=rtol, atol=1e-30, dtype=dtype, like=x)
    log = concat([state.log_normalize(block) for block in blocks], axis=-1)
    assert_close(log, log_p, xp, rtol=rtol, dtype=dtype, like=x)
    # States of the chunks taken apart merge to the same result.
    a = smk.LogSumExpState(temperature=temperature).update(blocks[1])
    b = smk.LogSumExpState(temperature=temperature).update(blocks[0])
    assert_close(a.merge(b).logsumexp(), expected, xp, rtol=rtol, dtype=dtype)
