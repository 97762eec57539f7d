"""torch.compile(fullgraph=True) over softmaxkit.torch (issue 16): the custom operators
trace without a graph break, and the compiled model gives the eager model's results and
gradients, with the kernel running inside."""

from __future__ import annotations

import copy
import warnings

import pytest

from softmaxkit import _dispatch, _kernels

torch = pytest.importorskip("torch")
smt = pytest.importorskip("softmaxkit.torch")
if not _kernels.kernel_available():
    pytest.skip("the compiled kernel is not built", allow_module_level=True)
pytest.importorskip("torch._dynamo")


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 5)
        self.log_softmax = smt.LogSoftmax(dim=-1, temperature=0.8)

    def forward(self, x, keep):
        scores = self.linear(x)
        return (
            self.log_softmax(scores)
            + smt.softmax(scores, dim=0, where=keep)
            + smt.logsumexp(scores, 1, keepdim=True)
        )


def test_a_compiled_model_has_no_graph_break_and_matches_eager():
    torch.manual_seed(0)
    model = Head()
    compiled_model = copy.deepcopy(model)
    x = torch.randn(6, 8)
    keep = torch.rand(6, 5) > 0.2
    keep[0] = True  # every column keeps an entry
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(compiled_model)(x, keep)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(compiled_model, fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = _dispatch.counts["kernel"]
        y = compiled(x, keep)
        y.sum().backward()
    assert _dispatch.counts["kernel"] >= before + 3, "the kernel did not run"
    # torch 2.13 itself warns that torch.jit.script(_method) is deprecated when it
    # compiles any model (a model of torch's own functions gets the same): nothing else.
    others = [w for w in caught if "torch.jit.script" not in str(w.message)]
    assert not others, [str(w.message) for w in others]
    expected = model(x, keep)
    expected.sum().backward()
    torch.testing.assert_close(y, expected)
    for a, b in zip(compiled_model.parameters(), model.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_the_operators_have_fake_implementations():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(3, 4)
        assert torch.ops.softmaxkit.normalize(x, 0, 1, 1.0, None).shape == (3, 4)
        assert torch.ops.softmaxkit.logsumexp(x, 1, False, 1.0, None).shape == (3,)
        assert torch.ops.softmaxkit.logsumexp(x, 0, True, 1.0, None).shape == (1, 4)
    torch.library.opcheck(
        torch.ops.softmaxkit.normalize.default, (torch.randn(3, 4), 1, -1, 0.5, None)
    )
