"""softmaxkit.torch (issue 16): the functional forms with ``dim`` and the nn modules,
against torch's own."""

from __future__ import annotations

import copy
import pickle

import pytest

torch = pytest.importorskip("torch")
smt = pytest.importorskip("softmaxkit.torch")
nn = torch.nn
F = torch.nn.functional


def _x(*shape, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator) * 3).to(dtype)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_functional_forms_match_torch(dim):
    x = _x(4, 6, 5)
    torch.testing.assert_close(smt.softmax(x, dim), torch.softmax(x, dim))
    torch.testing.assert_close(smt.log_softmax(x, dim=dim), F.log_softmax(x, dim=dim))
    for keepdim in (False, True):
        torch.testing.assert_close(
            smt.logsumexp(x, dim, keepdim=keepdim), torch.logsumexp(x, dim, keepdim=keepdim)
        )
    torch.testing.assert_close(smt.logsumexp(x, (0, 2)), torch.logsumexp(x, (0, 2)))
    keep = x > -2
    torch.testing.assert_close(
        smt.softmax(x, dim, temperature=0.5, where=keep),
        torch.softmax((x / 0.5).masked_fill(~keep, -float("inf")), dim),
    )


@pytest.mark.parametrize(
    "ours, theirs", [(smt.Softmax, nn.Softmax), (smt.LogSoftmax, nn.LogSoftmax)]
)
@pytest.mark.parametrize("dim", [1, -1, 0])
def test_modules_are_drop_in(ours, theirs, dim):
    x = _x(3, 7, seed=1, dtype=torch.float64).requires_grad_()
    module, reference = ours(dim=dim), theirs(dim=dim)
    assert repr(module) == repr(reference)
    assert module.state_dict() == {} and list(module.parameters()) == []
    y, expected = module(x), reference(x)
    torch.testing.assert_close(y, expected)
    g = _x(3, 7, seed=2, dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, g)
    (expected_grad,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(grad, expected_grad)
    assert module.to(torch.float16) is module and module.to("cpu") is module
    assert module.eval() is module and module.train() is module
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert repr(clone) == repr(module)
        torch.testing.assert_close(clone(x), expected)
    module.load_state_dict(reference.state_dict())


def test_the_temperature_and_the_mask_of_a_module():
    x = _x(2, 5, seed=3)
    module = smt.Softmax(dim=-1, temperature=2.0)
    assert repr(module) == "Softmax(dim=-1, temperature=2.0)"
    torch.testing.assert_close(module(x), torch.softmax(x / 2.0, -1))
    keep = torch.tensor([True, False, True, True, False])
    assert (smt.LogSoftmax()(x, where=keep)[:, ~keep] == -float("inf")).all()
    with pytest.raises(ValueError, match="temperature"):
        smt.Softmax(temperature=-1.0)
    with pytest.raises(TypeError, match="temperature"):
        smt.Softmax(temperature="hot")


def test_modules_in_a_model_train_as_torch_s():
    torch.manual_seed(0)
    linear = nn.Linear(4, 3).double()
    ours = nn.Sequential(copy.deepcopy(linear), smt.LogSoftmax(dim=1))
    theirs = nn.Sequential(copy.deepcopy(linear), nn.LogSoftmax(dim=1))
    x = _x(8, 4, seed=4, dtype=torch.float64)
    target = torch.arange(8) % 3
    F.nll_loss(ours(x), target).backward()
    F.nll_loss(theirs(x), target).backward()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reduction": "sum"},
        {"reduction": "none"},
        {"ignore_index": 1},
        {"label_smoothing": 0.2},
        {"weight": torch.tensor([0.5, 2.0, 1.0, 0.0], dtype=torch.float64)},
        {
            "weight": torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64),
            "ignore_index": 0,
            "label_smoothing": 0.1,
        },
    ],
)
def test_cross_entropy_loss_matches_torch(options):
    x = _x(6, 4, seed=5, dtype=torch.float64).requires_grad_()
    target = torch.tensor([0, 1, 2, 3, 1, 0])
    ours, theirs = smt.CrossEntropyLoss(**options), nn.CrossEntropyLoss(**options)
    loss, expected = ours(x, target), theirs(x, target)
    torch.testing.assert_close(loss, expected)
    g = torch.ones_like(expected)
    torch.testing.assert_close(
        torch.autograd.grad(loss, x, g)[0], torch.autograd.grad(expected, x, g)[0]
    )
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_cross_entropy_loss_with_spatial_dims_and_probabilities():
    x = _x(2, 3, 4, seed=6, dtype=torch.float64)
    target = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    torch.testing.assert_close(smt.CrossEntropyLoss()(x, target), F.cross_entropy(x, target))
    probabilities = torch.softmax(_x(2, 3, 4, seed=7, dtype=torch.float64), 1)
    torch.testing.assert_close(
        smt.CrossEntropyLoss()(x, probabilities), F.cross_entropy(x, probabilities)
    )
    assert "z_loss=0.1" in repr(smt.CrossEntropyLoss(z_loss=0.1))
    with pytest.raises(ValueError, match="reduction"):
        smt.CrossEntropyLoss(reduction="avg")
