"""The plain cross_entropy call (class indices, no option but ignore_index and
reduction) in one call of the kernel's entry: against extended precision, against
the general path, and every case it must hand to the general path."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from optional import requires_torch, torch
from reference import ulp_error

import softmaxkit as smk
from softmaxkit import _kernels
from softmaxkit.losses import _plain_index

needs_kernel = pytest.mark.skipif(not _kernels.kernel_available(), reason="no compiled kernel")


@pytest.fixture
def entry_calls(monkeypatch):
    """The kernel entry's answers: True where it took the call."""
    answers = []
    original = _kernels._kernel.plain_cross_entropy

    def spy(*args):
        result = original(*args)
        answers.append(result is not NotImplemented)
        return result

    monkeypatch.setattr(_kernels._kernel, "plain_cross_entropy", spy)
    return answers


def exact(logits, target, ignore_index=-100):
    """Per row in long double: the loss lse - x_t and the gradient softmax - onehot
    (0 for ignored rows)."""
    x = np.asarray(logits, dtype=np.longdouble)
    top = x.max(axis=1, keepdims=True)
    # log1p of the terms below the top: p_t - 1 of a confident row keeps its digits.
    below = np.exp(x - top)
    below[np.arange(x.shape[0]), np.argmax(x, axis=1)] = 0
    log_total = np.log1p(below.sum(axis=1, keepdims=True))
    log_p = x - top - log_total
    active = target != ignore_index
    rows = np.arange(x.shape[0])
    safe = np.where(active, target, 0)
    loss = np.where(active, -log_p[rows, safe], 0)
    grad = np.exp(log_p)
    grad[rows, safe] = np.expm1(log_p[rows, safe])  # p_t - 1 without cancellation
    grad[~active] = 0
    return loss, grad


def _data(dtype, n_rows, n_classes, seed=0, spread=4.0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n_rows, n_classes)) * spread).astype(dtype)
    target = rng.integers(0, n_classes, size=n_rows)
    return logits, target


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (64, 1000), (300, 33)])
def test_per_row_losses_and_gradient_against_long_double(dtype, shape, entry_calls):
    logits, target = _data(dtype, *shape)
    target[::3] = -100
    loss, grad = smk.cross_entropy(logits, target, reduction="none", return_grad=True)
    assert entry_calls == [True]
    assert loss.dtype == dtype and grad.dtype == dtype
    exact_loss, exact_grad = exact(logits, target)
    bound = 2 if dtype == np.float32 else 4
    assert ulp_error(loss, exact_loss, dtype).max() <= bound
    # The target's entry is p_t - 1 without cancellation; every other is p_c.
    assert ulp_error(grad, exact_grad, dtype).max() <= bound
    assert np.all(loss[::3] == 0) and np.all(grad[::3] == 0)
    assert not np.signbit(grad[::3]).any()


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_against_an_exact_sum(dtype, reduction, entry_calls):
    """The losses' sum is compensated: within a few ulp of the exact sum over many rows
    (a sum in float64 one term after another drifts by about n u)."""
    logits, target = _data(dtype, 20_000, 7, seed=2)
    target[5::11] = 3 if dtype == np.float32 else -100
    ignore_index = 3 if dtype == np.float32 else -100
    value, grad = smk.cross_entropy(
        logits, target, reduction=reduction, ignore_index=ignore_index, return_grad=True
    )
    assert entry_calls == [True] and value.shape == () and value.dtype == dtype
    rows, _ = exact(logits, target, ignore_index)
    with mpmath.workdps(40):
        total = mpmath.fsum(mpmath.mpf(float(r)) for r in rows.astype(np.float64))
        count = int(np.count_nonzero(target != ignore_index))
        expected = total / count if reduction == "mean" else total
    assert abs(float(value) - float(expected)) <= 2 * np.spacing(dtype(float(expected)))
    scale = 1 / count if reduction == "mean" else 1.0
    _, exact_grad = exact(logits, target, ignore_index)
    assert ulp_error(grad, exact_grad * scale, dtype).max() <= 4


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_the_general_path(dtype, entry_calls):
    """The general path (a weight of ones forces it) computes the same losses."""
    logits, target = _data(dtype, 40, 300, seed=1)
    target[1] = -100
    loss, grad = smk.cross_entropy(logits, target, reduction="none", return_grad=True)
    ones = np.ones(300, dtype=dtype)
    general_loss, general_grad = smk.cross_entropy(
        logits, target, reduction="none", return_grad=True, weight=ones
    )
    assert entry_calls == [True]
    np.testing.assert_array_equal(loss, general_loss)
    np.testing.assert_array_equal(grad, general_grad)


@needs_kernel
def test_strided_rows_int32_targets_and_the_class_axis_one(entry_calls):
    wide, target = _data(np.float64, 9, 20, seed=3)
    logits = wide[::2, :11]  # rows 40 entries apart, 11 classes
    target = (target[::2] % 11).astype(np.int32)
    loss = smk.cross_entropy(logits, target, axis=1, reduction="none")
    assert entry_calls == [True]
    assert ulp_error(loss, exact(logits, target)[0], np.float64).max() <= 4


@needs_kernel
def test_every_target_ignored_gives_zero(entry_calls):
    logits, _ = _data(np.float32, 5, 4)
    target = np.full(5, -100)
    loss, grad = smk.cross_entropy(logits, target, return_grad=True)
    assert entry_calls == [True]
    assert loss == 0 and not np.signbit(loss) and np.all(grad == 0)


@needs_kernel
def test_a_target_at_a_minus_inf_logit_is_an_infinite_loss_with_a_finite_gradient(entry_calls):
    logits = np.array([[0.0, -np.inf, 1.0], [2.0, 1.0, 0.0]])
    loss, grad = smk.cross_entropy(logits, np.array([1, 0]), reduction="none", return_grad=True)
    assert entry_calls == [True]
    assert loss[0] == np.inf and np.isfinite(grad).all() and grad[0, 1] == -1.0


@needs_kernel
@pytest.mark.parametrize(
    "logits, target",
    [
        ([[0.0, np.nan], [1.0, 2.0]], [0, 1]),
        ([[np.inf, 0.0], [1.0, 2.0]], [0, 1]),
        ([[-np.inf, -np.inf], [1.0, 2.0]], [0, 1]),
    ],
    ids=["nan", "plus-inf", "all-minus-inf"],
)
def test_rows_that_are_not_finite_go_to_the_general_path(logits, target, entry_calls):
    logits, target = np.array(logits), np.array(target)
    loss, grad = smk.cross_entropy(logits, target, reduction="none", return_grad=True)
    assert entry_calls == [False]
    ones = np.ones(2)
    general = smk.cross_entropy(logits, target, reduction="none", return_grad=True, weight=ones)
    np.testing.assert_array_equal(loss, general[0])
    np.testing.assert_array_equal(grad, general[1])


@needs_kernel
@pytest.mark.parametrize("bad", [5, -1, -101])
def test_a_target_out_of_range_is_named_by_the_general_path(bad, entry_calls):
    logits, target = _data(np.float64, 4, 5)
    target[2] = bad
    with pytest.raises(ValueError, match="target") as info:
        smk.cross_entropy(logits, target)
    assert str(bad) in str(info.value)
    assert entry_calls == [False]


@needs_kernel
@pytest.mark.parametrize(
    "case",
    ["uint8 targets", "float targets", "3-D logits", "integer logits", "huge ignore_index",
     "list target"],
)  # fmt: skip
def test_other_calls_do_not_reach_the_entry(case, entry_calls):
    logits, target = _data(np.float64, 4, 5)
    ignore_index = -100
    if case == "uint8 targets":
        target = target.astype(np.uint8)
    elif case == "bool targets":
        target = target > 2
    elif case == "float targets":
        target = np.full((4, 5), 0.2)
    elif case == "3-D logits":
        logits, target = logits[None], target[None]
    elif case == "integer logits":
        logits = np.arange(20).reshape(4, 5)
    elif case == "huge ignore_index":
        ignore_index = 2**70
    elif case == "list target":
        target = list(target)
    smk.cross_entropy(logits, target, ignore_index=ignore_index)
    assert entry_calls == []


@needs_kernel
def test_the_entry_refuses_bad_arguments():
    x = np.zeros((2, 3))
    t = np.zeros(2, dtype=np.int64)
    entry = _kernels._kernel.plain_cross_entropy
    with pytest.raises(ValueError, match="reduction"):
        entry(x, t, -100, 3, None, None, 1)
    with pytest.raises(ValueError, match="row_loss"):
        entry(x, t, -100, 2, None, None, 1)
    with pytest.raises(ValueError, match="target"):
        entry(x, np.zeros(3, dtype=np.int64), -100, 0, None, None, 1)
    with pytest.raises(ValueError, match="out"):
        entry(x, t, -100, 0, np.zeros((2, 4)), None, 1)
    with pytest.raises(ValueError, match="contiguous rows"):
        entry(np.zeros((3, 2)).T, t, -100, 0, None, None, 1)
    loss, grad = _plain_index.row_losses(x, t, -100, "mean", False)
    assert abs(loss - math.log(3)) <= np.spacing(math.log(3)) and grad is None


@needs_kernel
def test_bool_targets_are_refused_before_the_entry(entry_calls):
    with pytest.raises(TypeError, match="bool"):
        smk.cross_entropy(np.zeros((2, 3)), np.array([True, False]))
    assert entry_calls == []


@requires_torch
@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_tensors_forward_and_backward_against_torch_in_float64(dtype, reduction, entry_calls):
    dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(5)
    logits = (torch.randn(16, 50, generator=generator, dtype=torch.float64) * 3).to(dtype)
    target = torch.randint(0, 50, (16,), generator=generator)
    target[3] = -100
    x = logits.clone().requires_grad_()
    ours = smk.cross_entropy(x, target, reduction=reduction)
    assert ours.dtype is dtype and ours.requires_grad
    upstream = torch.linspace(0.5, 1.5, ours.numel(), dtype=torch.float64).reshape(ours.shape)
    (ours.double() * upstream).sum().backward(retain_graph=True)
    reference = logits.to(torch.float64).requires_grad_()
    theirs = torch.nn.functional.cross_entropy(reference, target, reduction=reduction)
    (theirs * upstream).sum().backward()
    assert entry_calls == [True]
    eps = {torch.float32: 2e-7, torch.float64: 1e-15, torch.bfloat16: 8e-3}[dtype]
    torch.testing.assert_close(ours.double(), theirs.detach(), rtol=eps, atol=0)
    torch.testing.assert_close(x.grad.double(), reference.grad, rtol=eps, atol=eps * 1e-2)
    assert x.grad.dtype is dtype
    # A second backward of the retained graph computes the gradient again.
    first = x.grad.clone()
    (ours.double() * upstream).sum().backward()
    torch.testing.assert_close(x.grad, 2 * first)


@requires_torch
@needs_kernel
def test_tensors_a_second_derivative_goes_through_the_generic_path():
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 5, -100, 2])
    assert torch.autograd.gradcheck(lambda v: smk.cross_entropy(v, target), (x,))
    assert torch.autograd.gradgradcheck(lambda v: smk.cross_entropy(v, target), (x,))


@requires_torch
@needs_kernel
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_tensors_return_grad_in_their_dtype(dtype, entry_calls):
    dtype = getattr(torch, dtype)
    logits = torch.randn(6, 9).to(dtype)
    target = torch.randint(0, 9, (6,))
    loss, grad = smk.cross_entropy(logits, target, return_grad=True)
    assert entry_calls == [True] and loss.dtype is dtype and grad.dtype is dtype
    x = logits.double().requires_grad_()
    torch.nn.functional.cross_entropy(x, target).backward()
    torch.testing.assert_close(grad.double(), x.grad, rtol=8e-3, atol=1e-4)


@requires_torch
@needs_kernel
def test_tensors_return_grad_and_no_autograd(entry_calls):
    logits = torch.randn(8, 5, dtype=torch.float64)
    target = torch.randint(0, 5, (8,))
    loss, grad = smk.cross_entropy(logits, target, return_grad=True)
    assert entry_calls == [True] and not loss.requires_grad
    x = logits.clone().requires_grad_()
    torch.nn.functional.cross_entropy(x, target).backward()
    torch.testing.assert_close(grad, x.grad, rtol=1e-14, atol=1e-17)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, target))


def exact_smoothed(logits, target, smoothing, ignore_index=-100):
    """Per row in long double, with label smoothing: the loss
    ``(1 - eps) (-log p_t) + (eps / k) sum_c (-log p_c)``, the gradient ``p - q`` and
    the probabilities ``p``."""
    x = np.asarray(logits, dtype=np.longdouble)
    k = x.shape[1]
    top = x.max(axis=1, keepdims=True)
    below = np.exp(x - top)
    below[np.arange(x.shape[0]), np.argmax(x, axis=1)] = 0
    log_p = x - top - np.log1p(below.sum(axis=1, keepdims=True))
    active = target != ignore_index
    rows = np.arange(x.shape[0])
    safe = np.where(active, target, 0)
    loss = (1 - smoothing) * -log_p[rows, safe] + smoothing / k * -log_p.sum(axis=1)
    p = np.exp(log_p)
    grad = p - smoothing / k
    grad[rows, safe] = np.expm1(log_p[rows, safe]) + smoothing - smoothing / k
    grad[~active] = 0
    return np.where(active, loss, 0), grad, p


@needs_kernel
@pytest.mark.parametrize("smoothing", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (64, 1000), (3, 40_000)])
def test_label_smoothing_on_float32_against_long_double(smoothing, shape, entry_calls):
    logits, target = _data(np.float32, *shape, seed=7)
    target[1::4] = -100
    loss, grad = smk.cross_entropy(
        logits, target, reduction="none", label_smoothing=smoothing, return_grad=True
    )
    assert entry_calls == [True]
    exact_loss, exact_grad, p = exact_smoothed(logits, target, smoothing)
    assert ulp_error(loss, exact_loss, np.float32).max() <= 2
    # p_c - eps / k cancels where p_c is near eps / k: within the rounding of p_c to
    # float32 and of the difference.
    allowed = 2 * np.spacing(np.maximum(np.abs(exact_grad), p).astype(np.float32))
    assert np.all(np.abs(grad.astype(np.longdouble) - exact_grad) <= allowed)
    assert np.all(grad[1::4] == 0) and np.all(loss[1::4] == 0)


@needs_kernel
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_label_smoothing_agrees_with_the_general_path(reduction, entry_calls):
    logits, target = _data(np.float32, 50, 200, seed=8)
    target[7] = -100
    loss, grad = smk.cross_entropy(
        logits, target, reduction=reduction, label_smoothing=0.2, return_grad=True
    )
    assert entry_calls == [True]
    general_loss, general_grad = smk.cross_entropy(
        logits, target, reduction=reduction, label_smoothing=0.2, return_grad=True,
        weight=np.ones(200, dtype=np.float32),
    )  # fmt: skip
    np.testing.assert_allclose(loss, general_loss, rtol=2e-7)
    # Both round the float64 difference p_c - eps / k once (p_c itself in float32).
    atol = 2 * np.spacing(np.abs(general_grad).max())
    np.testing.assert_allclose(grad, general_grad, rtol=0, atol=atol)


@needs_kernel
def test_label_smoothing_hands_over_rows_with_minus_inf_and_float64(entry_calls):
    """A -inf logit takes no part in the smoothing (fewer classes): the general path."""
    logits = np.array([[0.0, -np.inf, 1.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    loss = smk.cross_entropy(logits, np.array([0, 1]), label_smoothing=0.3, reduction="none")
    assert entry_calls == [False]
    mp = [mpmath.log(mpmath.exp(0) + mpmath.exp(1)), None]
    expected = 0.7 * (mp[0] - 0) + 0.15 * ((mp[0] - 0) + (mp[0] - 1))
    assert abs(float(loss[0]) - float(expected)) <= 2 * np.spacing(np.float32(expected))
    smk.cross_entropy(logits.astype(np.float64), np.array([0, 1]), label_smoothing=0.3)
    assert entry_calls == [False]


@requires_torch
@needs_kernel
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_bfloat16_tensors_are_read_in_place_against_long_double(smoothing, entry_calls):
    """bfloat16 logits go to the entry as their bits (no float32 copy); the gradient
    comes back in bfloat16, each entry within an ulp of the exact one (with smoothing,
    of the larger of it and p_c: p_c - eps / k cancels)."""
    generator = torch.Generator().manual_seed(9)
    logits = (torch.randn(24, 700, generator=generator) * 3).to(torch.bfloat16)
    target = torch.randint(0, 700, (24,), generator=generator)
    target[5] = -100
    seen = []
    original = _plain_index.row_losses

    def spy(values, *args):
        seen.append(values.__array_interface__["data"][0])
        return original(values, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_plain_index, "row_losses", spy)
        loss, grad = smk.cross_entropy(
            logits, target, reduction="none", label_smoothing=smoothing, return_grad=True
        )
    assert entry_calls == [True] and seen == [logits.data_ptr()]
    assert loss.dtype is torch.bfloat16 and grad.dtype is torch.bfloat16
    x = logits.float().numpy()
    t = target.numpy()
    exact_loss, exact_grad, p = exact_smoothed(x, t, smoothing)
    ulp = 2.0**-7  # bfloat16: 8 significant bits
    scale = np.abs(exact_loss).astype(np.float64)
    assert np.all(np.abs(loss.double().numpy() - exact_loss) <= ulp * scale)
    size = np.maximum(np.abs(exact_grad), p) if smoothing else np.abs(exact_grad)
    assert np.all(np.abs(grad.double().numpy() - exact_grad) <= ulp * size.astype(np.float64))
