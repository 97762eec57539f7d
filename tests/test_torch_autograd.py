"""Autograd on the kernel's torch path (issue 16): gradcheck in float64, the edge rules
of the gradients, torch.func (grad, vjp, jacrev, jacfwd, hessian) and vmap."""

from __future__ import annotations

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _dispatch, _kernels

torch = pytest.importorskip("torch")
if not _kernels.kernel_available():
    pytest.skip("the compiled kernel is not built", allow_module_level=True)

# torch's forward AD loads its decompositions through torch.jit.script, deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

INF = float("inf")
FUNCTIONS = [smk.softmax, smk.log_softmax, smk.logsumexp]
TORCH_FUNCTIONS = {
    "softmax": lambda v, axis=-1: torch.softmax(v, axis),
    "log_softmax": lambda v, axis=-1: torch.log_softmax(v, axis),
    "logsumexp": lambda v, axis=-1: torch.logsumexp(v, axis),
}


def _x(shape=(3, 5), seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


# Each row keeps at least two entries, so that no finite difference meets an -inf output.
MASK = torch.tensor([[True, False, True, True, True], [False, True, True, False, True], [True] * 5])
ROW_T = torch.tensor([[0.5], [2.0], [1.3]], dtype=torch.float64)
OPTIONS = {
    "plain": {},
    "temperature": {"temperature": 0.7},
    "rows": {"temperature": ROW_T},
    "where": {"where": MASK},
    "rows-where": {"temperature": ROW_T, "where": MASK},
}


def _finite_outputs(function, options):
    """``function`` with masked outputs (-inf for log_softmax) set to 0 for gradcheck."""

    def wrapped(v, **extra):
        result = function(v, **options, **extra)
        if function is smk.log_softmax and "where" in options:
            result = result.masked_fill(~options["where"], 0.0)
        return result

    return wrapped


@pytest.mark.parametrize("options", list(OPTIONS), ids=str)
@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("axis", [-1, 0])
def test_gradcheck_float64(function, options, axis):
    chosen = dict(OPTIONS[options])
    if axis == 0:
        if "temperature" in chosen and not isinstance(chosen["temperature"], float):
            chosen["temperature"] = ROW_T.reshape(1, 3).expand(1, 3)
        shape = (5, 3)
        if "where" in chosen:
            chosen["where"] = MASK.T
    else:
        shape = (3, 5)
    f = _finite_outputs(function, chosen)
    x = _x(shape).requires_grad_()
    before = dict(_dispatch.counts)
    f(x, axis=axis)
    assert _dispatch.counts["kernel"] == before["kernel"] + 1
    assert _dispatch.counts["generic"] == before["generic"]
    assert torch.autograd.gradcheck(lambda v: f(v, axis=axis), (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(lambda v: f(v, axis=axis), (x,))


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gradients_match_torch_in_every_dtype(function, dtype):
    x = (_x((8, 50), seed=1) * 3).to(dtype).requires_grad_()
    g = _x((8, 50) if function is not smk.logsumexp else (8,), seed=2).to(dtype)
    (ours,) = torch.autograd.grad(function(x), x, g)
    (theirs,) = torch.autograd.grad(TORCH_FUNCTIONS[function.__name__](x.float()), x, g.float())
    assert ours.dtype == dtype
    tolerance = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=tolerance, atol=tolerance)


def test_temperature_divides_the_gradient():
    x = _x().requires_grad_()
    g = _x(seed=3)
    for function in FUNCTIONS:
        upstream = g if function is not smk.logsumexp else g[:, 0]
        (ours,) = torch.autograd.grad(function(x, temperature=0.25), x, upstream)
        scaled = (x / 0.25).detach().requires_grad_()
        (theirs,) = torch.autograd.grad(
            TORCH_FUNCTIONS[function.__name__](scaled), scaled, upstream
        )
        torch.testing.assert_close(ours, theirs / 0.25, rtol=1e-12, atol=1e-12)


# ---- the edge rules ----

EDGE = torch.tensor(
    [
        [-INF, -INF, -INF, -INF],
        [0.0, -INF, 1.0, 2.0],
        [INF, 1.0, INF, 0.0],
        [1.0, 2.0, 3.0, 4.0],
    ],
    dtype=torch.float64,
)
EDGE_MASK = torch.tensor(
    [[True] * 4, [True, True, False, True], [True] * 4, [False, False, False, False]]
)


@pytest.mark.parametrize("masked", [False, True])
def test_gradients_are_finite_and_zero_where_nothing_moves(masked):
    where = EDGE_MASK if masked else None
    g = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64).expand(4, 4)
    x = EDGE.clone().requires_grad_()
    (p_grad,) = torch.autograd.grad(smk.softmax(x, where=where), x, g)
    (lp_grad,) = torch.autograd.grad(smk.log_softmax(x, where=where), x, g)
    (lse_grad,) = torch.autograd.grad(smk.logsumexp(x, where=where), x, g[:, 0])
    for grad in (p_grad, lp_grad, lse_grad):
        assert torch.isfinite(grad).all()
    # softmax: 0 at entries of probability 0 and on an all -inf row
    assert (p_grad[0] == 0).all() and p_grad[1, 1] == 0
    # log_softmax: 0 on a row where no entry takes part; elsewhere g - softmax * sum(g)
    # (g itself at an -inf entry, as torch's log_softmax has it)
    assert (lp_grad[0] == 0).all()
    if not masked:
        p = torch.softmax(EDGE[3], -1)
        torch.testing.assert_close(lp_grad[3], g[3] - p * g[3].sum(), rtol=1e-15, atol=1e-15)
    # logsumexp: 0 on rows whose result is infinite, and at -inf entries
    assert (lse_grad[0] == 0).all() and (lse_grad[2] == 0).all() and lse_grad[1, 1] == 0
    if masked:
        for grad in (p_grad, lp_grad, lse_grad):
            assert (grad[~EDGE_MASK] == 0).all(), "masked entries get no gradient"
            assert (grad[3] == 0).all(), "an all-masked row gets no gradient"
        # log_softmax: the masked entries' upstream gradient is left out of the sum
        kept = EDGE_MASK[1]
        p = smk.softmax(EDGE[1], where=kept)
        expected = torch.where(kept, g[1] - p * g[1][kept].sum(), 0.0)
        torch.testing.assert_close(lp_grad[1], expected, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("temperature", [0.0, INF])
def test_gradients_vanish_at_temperatures_zero_and_infinity(temperature):
    x = _x().requires_grad_()
    for function in FUNCTIONS:
        (grad,) = torch.autograd.grad(function(x, temperature=temperature).sum(), x)
        assert (grad == 0).all()
    rows = torch.tensor([[temperature], [1.0], [temperature]], dtype=torch.float64)
    (grad,) = torch.autograd.grad(smk.softmax(x, temperature=rows)[:, 0].sum(), x)
    assert (grad[0] == 0).all() and (grad[2] == 0).all() and (grad[1] != 0).any()


def test_a_temperature_that_needs_a_gradient_takes_the_generic_path():
    x = _x().requires_grad_()
    temperature = torch.tensor([[0.8]], dtype=torch.float64, requires_grad=True)
    before = _dispatch.counts["generic"]
    y = smk.log_softmax(x, temperature=temperature)
    assert _dispatch.counts["generic"] == before + 1
    _, t_grad = torch.autograd.grad(y[:, 0].sum(), (x, temperature))
    reference_t = temperature.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(
        torch.log_softmax(x / reference_t, -1)[:, 0].sum(), reference_t
    )
    torch.testing.assert_close(t_grad, expected)


def test_no_grad_and_detached_inputs_build_no_graph():
    x = _x().requires_grad_()
    with torch.no_grad():
        assert smk.softmax(x).grad_fn is None
    assert smk.softmax(x.detach()).grad_fn is None
    assert smk.softmax(x).grad_fn is not None


# ---- torch.func and vmap ----


@pytest.mark.parametrize("name", list(TORCH_FUNCTIONS))
def test_torch_func_transforms_match_torch(name):
    ours = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}[
        name
    ]
    theirs = TORCH_FUNCTIONS[name]
    x = _x((5,), seed=4)
    before = _dispatch.counts["kernel"]
    for transform in (torch.func.jacrev, torch.func.jacfwd, torch.func.hessian):
        torch.testing.assert_close(
            transform(lambda v: ours(v, axis=0))(x), transform(lambda v: theirs(v, 0))(x)
        )
    assert _dispatch.counts["kernel"] > before, "the kernel did not run under torch.func"

    def loss(function):
        return lambda v: function(v).sum() if name == "logsumexp" else function(v)[..., 1].sum()

    matrix = _x((4, 5), seed=5)
    torch.testing.assert_close(
        torch.func.grad(loss(ours))(matrix), torch.func.grad(loss(theirs))(matrix)
    )
    out, vjp = torch.func.vjp(ours, matrix)
    torch.testing.assert_close(
        vjp(torch.ones_like(out))[0], torch.func.vjp(theirs, matrix)[1](torch.ones_like(out))[0]
    )


@pytest.mark.parametrize("in_dims", [0, 1])
def test_vmap_runs_the_kernel_on_the_whole_batch(in_dims):
    x = _x((6, 7), seed=6)
    before = _dispatch.counts["kernel"]
    for function in FUNCTIONS:
        batched = torch.func.vmap(lambda row, f=function: f(row, axis=0), in_dims=in_dims)(x)
        rows = x if in_dims == 0 else x.T
        expected = torch.stack([function(row, axis=0) for row in rows])
        torch.testing.assert_close(batched, expected, rtol=0, atol=0)
    assert _dispatch.counts["kernel"] >= before + 3


def test_vmap_with_a_mask_and_per_sample_gradients():
    x = _x((6, 5), seed=7)
    keep = torch.tensor([True, False, True, True, True])
    batched = torch.func.vmap(lambda row: smk.log_softmax(row, axis=0, where=keep))(x)
    np.testing.assert_array_equal(batched.numpy(), smk.log_softmax(x.numpy(), where=keep.numpy()))
    per_sample = torch.func.vmap(torch.func.grad(lambda row: smk.logsumexp(row, axis=0)))(x)
    torch.testing.assert_close(per_sample, torch.softmax(x, -1))
