"""The NumPy fast path of cross_entropy: softmax_stats, then one scatter per row.

It is taken for class-index targets, a scalar temperature, no mask and no label
smoothing; these tests prove it is taken (a spy on ``_kernels.softmax_stats``), and
compare it with PyTorch, mpmath and the general path (``generic_only``).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from optional import requires_torch, torch

import softmaxkit as smk
from softmaxkit import _kernels, losses

F = None if torch is None else torch.nn.functional

INF = math.inf

needs_kernel = pytest.mark.skipif(
    not _kernels.kernel_available(), reason="the fast path needs the compiled kernel"
)


@pytest.fixture
def stats_calls(monkeypatch):
    """Every call of ``softmax_stats`` from the losses, and of the kernel's entry of the
    plain call (no option but ``ignore_index`` and ``reduction``) where it took the call:
    (x, taken?). A plain call it declines (a row not finite) goes on to the general
    road, whose calls the list then shows."""
    calls, outs = _Calls(), []
    original = _kernels.softmax_stats
    original_plain = _kernels._kernel.plain_cross_entropy

    def spy(x, out, **kwargs):
        result = original(x, out, **kwargs)
        calls.append((x, result is not NotImplemented))
        outs.append(out)
        return result

    def spy_plain(x, target, ignore_index, reduction, out, *rest):
        result = original_plain(x, target, ignore_index, reduction, out, *rest)
        if result is not NotImplemented:
            calls.append((x, True))
            outs.append(out)
        return result

    monkeypatch.setattr(_kernels, "softmax_stats", spy)
    monkeypatch.setattr(_kernels._kernel, "plain_cross_entropy", spy_plain)
    calls.outs = outs
    return calls


class _Calls(list):
    """The calls of the spy, with ``outs``: the ``out`` argument of each."""


def _case(dtype, n_rows=12, n_classes=9, seed=0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n_rows, n_classes)) * 3).astype(dtype)
    target = rng.integers(0, n_classes, size=n_rows)
    target[1] = -100
    weight = rng.random(n_classes) + 0.25
    return logits, target, weight


def _torch_reference(
    logits, target, *, weight, ignore_index, reduction, z_loss, softcap, temperature, smoothing=0.0
):
    """The loss written with PyTorch ops (z-loss per row times the target's weight)."""
    x = torch.from_numpy(logits.astype(np.float64)).requires_grad_()
    scores = x if softcap is None else softcap * torch.tanh(x / softcap)
    scores = scores / temperature
    target_t = torch.from_numpy(target)
    weight_t = None if weight is None else torch.from_numpy(weight)
    row = F.cross_entropy(
        scores,
        target_t,
        weight=weight_t,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=smoothing,
    )
    active = target_t != ignore_index
    safe = torch.where(active, target_t, 0)
    row_weight = active.double() if weight is None else torch.where(active, weight_t[safe], 0.0)
    row = row + z_loss * row_weight * torch.logsumexp(scores, dim=-1) ** 2
    if reduction == "sum":
        total = row.sum()
    elif reduction == "mean":
        total = row.sum() / row_weight.sum()
    else:
        total = row
    total.sum().backward()
    return total.detach().numpy(), x.grad.numpy()


FAST_OPTIONS = [
    dict(),
    dict(weight=True),
    dict(ignore_index=3),
    dict(reduction="sum", weight=True),
    dict(reduction="none"),
    dict(z_loss=1e-2),
    dict(z_loss=1e-3, weight=True, reduction="none"),
    dict(softcap=4.0),
    dict(softcap=2.5, z_loss=1e-2, weight=True, reduction="sum"),
    dict(temperature=0.7, weight=True),
    dict(temperature=2.0, softcap=3.0, z_loss=1e-3, ignore_index=3),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, ignore_index=3, reduction="none"),
    dict(label_smoothing=0.05, z_loss=1e-2, softcap=3.0, temperature=0.7, reduction="sum"),
]


def _options(options, weight, target=None):
    """The options with the weight filled in; the target's -100 becomes the ignore_index."""
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = weight
    if target is not None:
        target[target == -100] = options.get("ignore_index", -100)
    return options


def _torch_reference_of(logits, target, options):
    """_torch_reference with cross_entropy's options (their defaults where absent)."""
    return _torch_reference(
        logits,
        target,
        weight=options.get("weight"),
        ignore_index=options.get("ignore_index", -100),
        reduction=options.get("reduction", "mean"),
        z_loss=options.get("z_loss", 0.0),
        softcap=options.get("softcap"),
        temperature=options.get("temperature", 1.0),
        smoothing=options.get("label_smoothing", 0.0),
    )


@requires_torch
@needs_kernel
@pytest.mark.parametrize("options", FAST_OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_fast_path_is_taken_and_matches_torch_float64(options, stats_calls):
    logits, target, weight = _case(np.float64)
    options = _options(options, weight, target)
    loss, grad = smk.cross_entropy(logits, target, return_grad=True, **options)
    assert stats_calls and all(taken for _, taken in stats_calls)
    expected_loss, expected_grad = _torch_reference_of(logits, target, options)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    ignored = target == options.get("ignore_index", -100)
    assert np.all(grad[ignored] == 0)


@requires_torch
@needs_kernel
@pytest.mark.parametrize("options", FAST_OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_fast_path_float32_matches_torch_and_the_general_path(options, stats_calls):
    logits, target, weight = _case(np.float32, n_rows=40, n_classes=300, seed=1)
    options = _options(options, weight, target)
    loss, grad = smk.cross_entropy(logits, target, return_grad=True, **options)
    assert stats_calls and all(taken for _, taken in stats_calls)
    stats_calls.clear()
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    with _kernels.generic_only():
        general_loss, general_grad = smk.cross_entropy(logits, target, return_grad=True, **options)
    np.testing.assert_allclose(loss, general_loss, rtol=2e-6, atol=1e-30)
    # With label smoothing, eps / k is taken off the float32 softmax entries: a
    # difference of float32 terms, within an ulp of the gradient's largest entry (both
    # paths; the general one rounds its float64 difference once).
    atol = 1e-12
    if options.get("label_smoothing"):
        atol = 2 * float(np.spacing(np.abs(general_grad).max()))
    np.testing.assert_allclose(grad, general_grad, rtol=2e-6, atol=atol)
    expected_loss, expected_grad = _torch_reference_of(logits, target, options)
    np.testing.assert_allclose(loss, expected_loss, rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=max(1e-10, atol))


@pytest.mark.parametrize(
    "options",
    [
        dict(label_smoothing=0.1, weight=np.array([1.0, 2.0, 1.0, 0.5, 1.0])),
        dict(where=np.array([True, False, True, True, True])),
        dict(temperature=np.array([[0.5], [1.0], [2.0]])),
        dict(temperature=0.0),
        dict(temperature=INF),
        dict(probabilities=True),
    ],
    ids=lambda o: ",".join(o),
)
def test_other_options_take_the_general_path(options, stats_calls):
    logits = np.array([[1.0, 2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 3.0, 1.0, 2.0], [4.0, 1, 2, 3, 0]])
    target = np.array([0, 2, 4])
    if options.pop("probabilities", False):
        target = smk.softmax(logits * 0.5)
    smk.cross_entropy(logits, target, return_grad=True, **options)
    assert stats_calls == []


def _mp_loss(row, index, temperature=1.0):
    # Enough digits for log(1 + 1e-60) to keep its relative accuracy.
    with mpmath.workdps(150):
        row = [mpmath.mpf(float(v)) / mpmath.mpf(temperature) for v in row]
        return +(mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row)) - row[index])


def _ulp_distance(actual, expected, dtype):
    spacing = float(np.spacing(np.array(abs(expected), dtype=dtype)))
    return abs(float(actual) - float(expected)) / spacing


@needs_kernel
@pytest.mark.parametrize("dtype, bound", [(np.float64, 4), (np.float32, 2)])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_fast_path_row_loss_is_accurate_against_mpmath(dtype, bound, temperature, stats_calls):
    rows = [
        ([0.0, -20.0, -25.0], 0),  # confident and correct: tiny positive loss
        ([20.0, 0.0, -3.0], 0),
        ([30.0, 0.0, -5.0], 1),
        ([700.0, -5e-14, 699.0], 2),
        ([1e-8, -1e-8, 0.0], 1),
        ([5.0, 5.0, 5.0], 2),
    ]
    logits = np.array([r for r, _ in rows], dtype=dtype)
    target = np.array([i for _, i in rows])
    loss = smk.cross_entropy(logits, target, reduction="none", temperature=temperature)
    assert stats_calls and all(taken for _, taken in stats_calls)
    for row, index, value in zip(logits, target, loss, strict=True):
        expected = _mp_loss(row, index, temperature)
        assert value > 0
        assert _ulp_distance(value, expected, dtype) <= bound, (row, index, value, expected)


@needs_kernel
def test_confident_correct_prediction_with_weight_and_z_loss_against_mpmath(stats_calls):
    logits = np.array([[25.0, 0.0, -1.0], [0.0, 1.0, 2.0]])
    target = np.array([0, 2])
    weight = np.array([3.0, 1.0, 0.5])
    loss = smk.cross_entropy(logits, target, weight=weight, z_loss=1e-4, reduction="none")
    assert stats_calls and all(taken for _, taken in stats_calls)
    for row, index, value in zip(logits, target, loss, strict=True):
        with mpmath.workdps(150):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        with mpmath.workdps(150):
            expected = weight[index] * (_mp_loss(row, index) + mpmath.mpf(1e-4) * lse**2)
        assert _ulp_distance(value, expected, np.float64) <= 4


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "options",
    [dict(), dict(z_loss=1e-3, softcap=5.0, weight=True), dict(label_smoothing=0.1, z_loss=1e-3)],
)
def test_edge_rows_in_a_fast_batch_equal_the_general_path(dtype, options, stats_calls):
    logits = np.array(
        [
            [1.0, 2.0, 0.0],
            [np.nan, 1.0, 0.0],
            [INF, 0.0, 1.0],
            [-INF, -INF, -INF],
            [INF, INF, -INF],
            [-INF, 1.0, 2.0],
            [np.nan, 0.0, 0.0],
            [3.0, -1.0, 0.5],
        ],
        dtype=dtype,
    )
    target = np.array([0, 1, 1, 2, 0, 0, -100, 2])
    options = _options(options, np.array([1.0, 2.0, 0.5]))
    loss, grad = smk.cross_entropy(logits, target, reduction="none", return_grad=True, **options)
    assert stats_calls and all(taken for _, taken in stats_calls)
    stats_calls.clear()
    with _kernels.generic_only():
        general_loss, general_grad = smk.cross_entropy(
            logits, target, reduction="none", return_grad=True, **options
        )
    # Rows that are not finite after the softcap: the kernel hands them back.
    if "softcap" in options:
        edge = np.array([False, True, False, True, False, False, True, False])
    elif "label_smoothing" in options:
        # With smoothing, a row with an entry -inf (fewer classes take part) as well.
        edge = np.array([False, True, True, True, True, True, True, False])
    else:
        edge = np.array([False, True, True, True, True, False, True, False])
    np.testing.assert_array_equal(loss[edge], general_loss[edge])
    np.testing.assert_array_equal(grad[edge], general_grad[edge])
    tolerance = dict(rtol=1e-12, atol=1e-300) if dtype == np.float64 else dict(rtol=2e-6)
    np.testing.assert_allclose(loss[~edge], general_loss[~edge], **tolerance)
    np.testing.assert_allclose(grad[~edge], general_grad[~edge], **tolerance)
    assert loss[5] == INF and np.all(np.isfinite(grad[5])) and loss[6] == 0


@needs_kernel
def test_fast_path_runs_once_per_block_on_views_of_the_logits(monkeypatch, stats_calls):
    rng = np.random.default_rng(18)
    logits = rng.standard_normal((18, 7)).astype(np.float32)
    target = rng.integers(0, 7, size=18)
    monkeypatch.setattr(losses._numpy_blocks, "_FAST_BLOCK_ENTRIES", 20)
    loss, grad = smk.cross_entropy(logits, target, return_grad=True, z_loss=1e-3)
    assert [np.shares_memory(x, logits) and taken for x, taken in stats_calls] == [True] * 9
    monkeypatch.setattr(losses._numpy_blocks, "_FAST_BLOCK_ENTRIES", 1 << 24)
    whole, whole_grad = smk.cross_entropy(logits, target, return_grad=True, z_loss=1e-3)
    assert len(stats_calls) == 10
    np.testing.assert_allclose(loss, whole, rtol=1e-6)
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-6, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize("options", [dict(), dict(z_loss=1e-2, softcap=3.0, ignore_index=2)])
def test_forward_only_gives_the_loss_of_the_forward_backward_call(options, stats_calls):
    logits, target, weight = _case(np.float64, seed=3)
    options = _options(options, weight, target)
    loss = smk.cross_entropy(logits, target, weight=weight, reduction="none", **options)
    with_grad, _ = smk.cross_entropy(
        logits, target, weight=weight, reduction="none", return_grad=True, **options
    )
    assert len(stats_calls) == 2 and all(taken for _, taken in stats_calls)
    # The loss alone writes no block of the logits' size: the statistics only.
    assert stats_calls.outs[0] is None and stats_calls.outs[1] is not None
    np.testing.assert_array_equal(loss, with_grad)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.3, 4.0])
def test_statistics_alone_are_those_of_the_softmax_run(dtype, temperature):
    rng = np.random.default_rng(9)
    x = (5 * rng.standard_normal((40, 300))).astype(dtype)
    x[0], x[1, 4], x[2, 6], x[3, 9] = -INF, INF, np.nan, 60.0
    x[4] = -INF
    x[4, 2] = 1.5
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    out = np.empty_like(x)
    with_softmax = _kernels.softmax_stats(strided, out, temperature=temperature)
    alone = _kernels.softmax_stats(strided, None, temperature=temperature)
    np.testing.assert_array_equal(alone, with_softmax)
    # The pairs against float64 arithmetic written out: max, log(sum(exp((x - max) / T))).
    finite = np.arange(5, 40)
    wide = x[finite].astype(np.float64)
    peak = wide.max(axis=1)
    log_normalizer = np.log(np.exp((wide - peak[:, None]) / temperature).sum(axis=1))
    np.testing.assert_array_equal(alone[finite, 0], peak)
    # float32 rows are summed in float32 lanes: a few units of float32 in the result.
    tolerance = dict(rtol=1e-12, atol=1e-15) if dtype == np.float64 else dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(alone[finite, 1], log_normalizer, **tolerance)
    assert np.isnan(alone[:3, 1]).all() and alone[4, 1] == 0.0
    assert _kernels.softmax_stats(x, None, gain=np.ones(40)) is NotImplemented


@requires_torch
def test_without_the_kernel_the_general_path_gives_the_same_result(monkeypatch):
    logits, target, weight = _case(np.float64, seed=4)
    options = dict(weight=weight, z_loss=1e-3, softcap=4.0, return_grad=True)
    monkeypatch.setattr(_kernels, "softmax_stats", lambda *args, **kwargs: NotImplemented)
    loss, grad = smk.cross_entropy(logits, target, **options)
    expected_loss, expected_grad = _torch_reference(
        logits,
        target,
        weight=weight,
        ignore_index=-100,
        reduction="mean",
        z_loss=1e-3,
        softcap=4.0,
        temperature=1.0,
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


@needs_kernel
def test_all_ignored_and_zero_weight_rows_on_the_fast_path(stats_calls):
    logits = np.array([[-INF, 1.0, 2.0], [3.0, -1.0, 0.0]])
    weight = np.array([0.0, 1.0, 1.0])
    loss, grad = smk.cross_entropy(logits, np.array([-100, -100]), return_grad=True)
    assert float(loss) == 0.0 and np.all(grad == 0)
    loss, grad = smk.cross_entropy(
        logits, np.array([0, 0]), weight=weight, reduction="none", return_grad=True
    )
    # A target of weight 0 adds nothing, even where its logit is -inf.
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    assert np.all(grad == 0)
    assert stats_calls and all(taken for _, taken in stats_calls)


@requires_torch
def test_float32_z_loss_on_the_general_path_matches_torch():
    # The general path (here for label smoothing) squares the float64 lse of float32 logits.
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((6, 5)) * 3).astype(np.float32)
    target = rng.integers(0, 5, size=6)
    loss, grad = smk.cross_entropy(
        logits, target, label_smoothing=0.1, z_loss=1e-2, return_grad=True
    )
    x = torch.from_numpy(logits.astype(np.float64)).requires_grad_()
    expected = (
        F.cross_entropy(x, torch.from_numpy(target), label_smoothing=0.1)
        + 1e-2 * (torch.logsumexp(x, dim=-1) ** 2).mean()
    )
    expected.backward()
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=2e-6)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("softcap", [30.0, 5.0, 0.1])
def test_float32_softcap_rounds_as_numpy_tanh_and_its_derivative_is_sech_squared(softcap):
    rng = np.random.default_rng(6)
    magnitudes = 10.0 ** rng.uniform(-12, 3, 20000)
    edges = [0.0, -0.0, INF, -INF, np.nan, 1e-30, 3e38, -3e38, 2**-10 * softcap]
    values = np.concatenate([rng.standard_normal(20000) * magnitudes, edges]).astype(np.float32)
    capped, derivative = losses._softcap._softcapped_float32(values[None, :], softcap)
    u = values.astype(np.float64) / softcap
    expected = np.where(u == -INF, u, softcap * np.tanh(u)).astype(np.float32)
    np.testing.assert_array_equal(capped[0], expected)
    moderate = np.abs(u) < 300
    sech_squared = 1.0 / np.cosh(u[moderate]) ** 2
    np.testing.assert_allclose(derivative[0][moderate], sech_squared, rtol=1e-13, atol=0)
    assert np.all(derivative[0][np.abs(u) > 400] == 0) and np.isnan(derivative[0][-5])


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_blocks_reuse_their_buffers_without_mixing_rows(monkeypatch, dtype, stats_calls):
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((11, 6)) * 20).astype(dtype)
    logits[4, 2] = -INF
    target = rng.integers(0, 6, size=11)
    options = dict(softcap=15.0, z_loss=1e-3, reduction="none", return_grad=True)
    monkeypatch.setattr(losses._numpy_blocks, "_BLOCK_ENTRIES", 12)
    loss, grad = smk.cross_entropy(logits, target, **options)
    assert len(stats_calls) == 6 and all(taken for _, taken in stats_calls)
    for row in range(11):
        row_loss, row_grad = smk.cross_entropy(
            logits[row : row + 1], target[row : row + 1], **options
        )
        np.testing.assert_array_equal(loss[row], row_loss[0])
        np.testing.assert_array_equal(grad[row], row_grad[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "scale, offset", [(3.0, 0.0), (3.0, 1e4), (1e-3, 1e4), (0.0, 5.0), (1e-6, 1e30)]
)
def test_label_smoothing_gaps_are_summed_accurately(dtype, scale, offset):
    # sum(max - x_c) of the smoothing term, against mpmath's exact sum of the float values:
    # large close logits (the float32 shortcut's bound fails there) and constant rows.
    from softmaxkit.losses._numpy_blocks import _summed_gaps

    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6, 500)) * scale + offset).astype(dtype)
    maxima = x.max(axis=1).astype(np.float64)
    gaps = _summed_gaps(x, maxima)
    for row, peak, value in zip(x, maxima, gaps, strict=True):
        with mpmath.workdps(60):
            exact = mpmath.fsum(mpmath.mpf(float(peak)) - mpmath.mpf(float(v)) for v in row)
        assert abs(value - float(exact)) <= 4 * np.spacing(float(exact)) or value == exact == 0
