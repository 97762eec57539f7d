"""cross_entropy of CPU tensors through the NumPy road and the kernel's fused pass
(issue 16): the fused pass ran on the tensor's memory, the loss and its gradient agree
with torch's own in float64, autograd (a second derivative included) and the options."""

from __future__ import annotations

import pytest

import softmaxkit as smk
from softmaxkit import _kernels

torch = pytest.importorskip("torch")
if not _kernels.kernel_available():
    pytest.skip("the compiled kernel is not built", allow_module_level=True)

import torch.nn.functional as F  # noqa: E402

from softmaxkit.losses import _numpy_blocks, _plain_index  # noqa: E402
from softmaxkit.torch import _cross_entropy as torch_path  # noqa: E402


@pytest.fixture
def fused_blocks(monkeypatch):
    """The logits arrays of every block the kernel's fused pass computed (the plain
    call's entry included)."""
    seen = []
    original = _numpy_blocks._fast_block
    original_plain = _plain_index.row_losses

    def spy(loss, values, *args, **kwargs):
        result = original(loss, values, *args, **kwargs)
        if result is not NotImplemented:
            seen.append(values)
        return result

    def spy_plain(values, *args, **kwargs):
        result = original_plain(values, *args, **kwargs)
        if result is not NotImplemented:
            seen.append(values)
        return result

    monkeypatch.setattr(_numpy_blocks, "_fast_block", spy)
    monkeypatch.setattr(_plain_index, "row_losses", spy_plain)
    return seen


@pytest.fixture
def numpy_road(monkeypatch):
    """How often the tensor road ran (rather than the generic path): the plain call's
    road where it took the call, else the general one."""
    runs = []
    original = torch_path.cross_entropy
    original_plain = torch_path.plain_cross_entropy

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        runs.append(result is not NotImplemented)
        return result

    def spy_plain(*args, **kwargs):
        result = original_plain(*args, **kwargs)
        if result is not NotImplemented:
            runs.append(True)
        return result

    monkeypatch.setattr(torch_path, "cross_entropy", spy)
    monkeypatch.setattr(torch_path, "plain_cross_entropy", spy_plain)
    return runs


def _data(shape=(48, 37), seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    classes = shape[1] if len(shape) > 1 else shape[0]
    batch = (shape[0],) + tuple(shape[2:])
    target = torch.randint(0, classes, batch, generator=generator)
    return logits.to(dtype), target


def _reference(logits, target, *, temperature=1.0, z_loss=0.0, softcap=None, **options):
    """torch's own cross-entropy in float64, with softmaxkit's extra options written out."""
    x = logits.to(torch.float64)
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    x = x / temperature
    loss = F.cross_entropy(x, target, **options)
    if z_loss == 0.0:
        return loss
    reduction = options.get("reduction", "mean")
    lse = torch.logsumexp(x, dim=1)
    row_weight = (target != options.get("ignore_index", -100)).to(torch.float64)
    weight = options.get("weight")
    if weight is not None:
        row_weight = row_weight * weight.to(torch.float64)[target.clamp(min=0)]
    extra = z_loss * row_weight * lse**2
    if reduction == "none":
        return loss + extra
    if reduction == "sum":
        return loss + extra.sum()
    return loss + extra.sum() / row_weight.sum()


# The options of the fused pass, and one that takes the NumPy blocks instead (label
# smoothing with class weights).
FUSED = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"ignore_index": 3},
    {"weight": True},
    {"weight": True, "ignore_index": 3, "reduction": "mean"},
    {"temperature": 0.7},
    {"z_loss": 1e-2},
    {"softcap": 5.0},
    {"z_loss": 1e-3, "softcap": 4.0, "weight": True, "reduction": "sum"},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.1, "z_loss": 1e-2, "ignore_index": 3, "reduction": "none"},
]
BLOCKS = [{"label_smoothing": 0.2, "weight": True}]


def _options(options, classes):
    options = dict(options)
    if options.get("weight") is True:
        options["weight"] = torch.linspace(0.5, 2.0, classes, dtype=torch.float64)
    return options


def _ignored(target, options):
    if "ignore_index" in options:
        target = target.clone()
        target[::5] = options["ignore_index"]
    return target


@pytest.mark.parametrize("options", FUSED + BLOCKS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_and_gradient_match_torch(options, dtype, fused_blocks, numpy_road):
    logits, target = _data(dtype=dtype)
    options = _options(options, logits.shape[1])
    target = _ignored(target, options)
    x = logits.clone().requires_grad_()
    ours = smk.cross_entropy(
        x, target, axis=1, **{k: v.to(dtype) if k == "weight" else v for k, v in options.items()}
    )
    assert ours.dtype is dtype and ours.shape == _reference(logits, target, **options).shape
    upstream = torch.linspace(0.5, 1.5, ours.numel(), dtype=dtype).reshape(ours.shape)
    (ours * upstream).sum().backward()

    xr = logits.to(torch.float64).requires_grad_()
    theirs = _reference(xr, target, **options)
    (theirs * upstream.to(torch.float64)).sum().backward()
    rtol = 1e-12 if dtype is torch.float64 else 2e-6
    torch.testing.assert_close(ours.to(torch.float64), theirs.detach(), rtol=rtol, atol=rtol)
    torch.testing.assert_close(x.grad.to(torch.float64), xr.grad, rtol=rtol, atol=rtol)
    assert numpy_road == [True]
    if options.get("label_smoothing") and "weight" in options:
        assert fused_blocks == []
    else:
        # One fused pass over the logits, read in place (no copy of the tensor).
        assert len(fused_blocks) == 1
        assert fused_blocks[0].__array_interface__["data"][0] == x.data_ptr() or (
            options.get("softcap") is not None
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_class_axis_anywhere_and_strided_logits(dtype, fused_blocks):
    generator = torch.Generator().manual_seed(3)
    wide = torch.randn(6, 11, 2 * 5, generator=generator, dtype=torch.float64).to(dtype)
    logits = wide[:, :, ::2]  # (N, C, d) with the class axis 1 and a stride of 2
    target = torch.randint(0, 11, (6, 5), generator=generator)
    x = logits.detach().requires_grad_()
    ours = smk.cross_entropy(x, target, axis=1)
    ours.backward()
    xr = logits.to(torch.float64).requires_grad_()
    theirs = F.cross_entropy(xr, target)
    theirs.backward()
    rtol = 1e-12 if dtype is torch.float64 else 2e-6
    torch.testing.assert_close(ours.to(torch.float64), theirs.detach(), rtol=rtol, atol=rtol)
    torch.testing.assert_close(x.grad.to(torch.float64), xr.grad, rtol=rtol, atol=rtol)
    assert len(fused_blocks) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits(dtype, numpy_road):
    logits, target = _data((20, 300), dtype=dtype)
    x = logits.clone().requires_grad_()
    ours = smk.cross_entropy(x, target, reduction="sum")
    ours.backward()
    xr = logits.to(torch.float64).requires_grad_()
    theirs = F.cross_entropy(xr, target, reduction="sum")
    theirs.backward()
    assert ours.dtype is dtype and x.grad.dtype is dtype
    # Computed in float32, rounded once to the 16-bit result.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(ours.double(), theirs.detach(), rtol=eps, atol=0)
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=eps, atol=eps * 1e-2)
    assert numpy_road == [True]


def test_return_grad_gives_tensors(numpy_road):
    logits, target = _data((9, 4, 13), dtype=torch.float32)
    loss, grad = smk.cross_entropy(logits, target, axis=1, return_grad=True, reduction="sum")
    assert isinstance(grad, torch.Tensor) and grad.shape == logits.shape
    xr = logits.to(torch.float64).requires_grad_()
    F.cross_entropy(xr, target, reduction="sum").backward()
    torch.testing.assert_close(grad.double(), xr.grad, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(
        loss.double(), F.cross_entropy(logits.double(), target, reduction="sum")
    )
    assert numpy_road == [True]


def test_without_autograd_no_gradient_is_written(fused_blocks):
    logits, target = _data((64, 50), dtype=torch.float64)
    with torch.no_grad():
        ours = smk.cross_entropy(logits.requires_grad_(), target)
    assert not ours.requires_grad
    torch.testing.assert_close(ours, F.cross_entropy(logits.detach(), target), rtol=1e-13, atol=0)
    assert len(fused_blocks) == 1


def test_second_derivative_through_create_graph():
    logits, target = _data((7, 5), dtype=torch.float64)
    weight = torch.tensor([0.5, 1.0, 2.0, 1.0, 0.25], dtype=torch.float64)

    def hessian_vector(loss_function):
        x = logits.clone().requires_grad_()
        (grad,) = torch.autograd.grad(loss_function(x), x, create_graph=True)
        (second,) = torch.autograd.grad((grad * torch.cos(x)).sum(), x)
        return grad.detach(), second

    ours = hessian_vector(lambda x: smk.cross_entropy(x, target, axis=1, weight=weight))
    theirs = hessian_vector(lambda x: F.cross_entropy(x, target, weight=weight))
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-10, atol=1e-13)


def test_gradcheck_through_the_numpy_road():
    logits, target = _data((5, 6), dtype=torch.float64)
    x = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: smk.cross_entropy(v, target, axis=1, z_loss=0.01, reduction="none"), (x,)
    )


def test_edges_are_those_of_the_numpy_path():
    inf = float("inf")
    logits = torch.tensor(
        [[0.0, -inf, 1.0], [-inf, -inf, -inf], [2.0, 1.0, -inf], [1e30, 0.0, -1e30]],
        dtype=torch.float32,
    )
    target = torch.tensor([1, 0, 0, -100])
    x = logits.clone().requires_grad_()
    ours = smk.cross_entropy(x, target, reduction="none")
    ours.sum().backward()
    expected, expected_grad = smk.cross_entropy(
        logits.numpy(), target.numpy(), reduction="none", return_grad=True
    )
    torch.testing.assert_close(ours, torch.from_numpy(expected), equal_nan=False)
    torch.testing.assert_close(x.grad, torch.from_numpy(expected_grad))
    assert ours[0] == inf and ours[3] == 0 and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize(
    "case",
    ["weight needs a gradient", "probability target needs a gradient", "torch.func.grad"],
)
def test_what_the_generic_path_takes(case, numpy_road):
    logits, target = _data((6, 4), dtype=torch.float64)
    if case == "weight needs a gradient":
        weight = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
        smk.cross_entropy(logits, target, weight=weight).backward()
        reference = weight.detach().clone().requires_grad_()
        # torch's cross-entropy has no gradient for weight: the weighted mean written out.
        picked = reference[target]
        log_p = torch.log_softmax(logits, 1)[torch.arange(6), target]
        (-(picked * log_p).sum() / picked.sum()).backward()
        torch.testing.assert_close(weight.grad, reference.grad)
    elif case == "probability target needs a gradient":
        probabilities = torch.softmax(torch.randn(6, 4, dtype=torch.float64), 1)
        probabilities.requires_grad_()
        smk.cross_entropy(logits, probabilities).backward()
        reference = probabilities.detach().clone().requires_grad_()
        F.cross_entropy(logits, reference).backward()
        torch.testing.assert_close(probabilities.grad, reference.grad)
    else:
        ours = torch.func.grad(lambda v: smk.cross_entropy(v, target))(logits)
        theirs = torch.func.grad(lambda v: F.cross_entropy(v, target))(logits)
        torch.testing.assert_close(ours, theirs)
    assert numpy_road == [False]


def test_module_calls_take_the_fused_pass(fused_blocks):
    from softmaxkit.torch import CrossEntropyLoss

    logits, target = _data((32, 20), dtype=torch.float32)
    x = logits.clone().requires_grad_()
    CrossEntropyLoss(ignore_index=2, z_loss=1e-3)(x, target).backward()
    assert len(fused_blocks) == 1 and torch.isfinite(x.grad).all()


def test_a_retained_graph_gives_the_same_gradient_twice():
    logits, target = _data((16, 9), dtype=torch.float64)
    x = logits.clone().requires_grad_()
    loss = smk.cross_entropy(x, target, reduction="none", label_smoothing=0.1)
    upstream = torch.linspace(0.0, 2.0, 16, dtype=torch.float64)
    (first,) = torch.autograd.grad(loss, x, upstream, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x, 3 * upstream)
    xr = logits.clone().requires_grad_()
    F.cross_entropy(xr, target, reduction="none", label_smoothing=0.1).backward(upstream)
    torch.testing.assert_close(first, xr.grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(second, 3 * xr.grad, rtol=1e-12, atol=1e-15)


def test_gradients_accumulate_over_two_losses():
    logits, target = _data((10, 7), dtype=torch.float64)
    x = logits.clone().requires_grad_()
    smk.cross_entropy(x, target).backward()
    smk.cross_entropy(x, target, reduction="sum").backward()
    xr = logits.clone().requires_grad_()
    F.cross_entropy(xr, target).backward()
    F.cross_entropy(xr, target, reduction="sum").backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-15)
