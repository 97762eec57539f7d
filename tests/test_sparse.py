"""sparsemax, entmax15, entmax and their losses: values, gradients, edges, errors.

The reference is the `entmax` package (PyTorch; imported only here), finite
differences for gradients, and PyTorch's cross-entropy for the loss reductions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from optional import entmax as entmax_package
from optional import requires_entmax, requires_torch, torch

import softmaxkit as smk
from softmaxkit import sparse as sparse_module

TORCH_FLOATS = [] if torch is None else [torch.float32, torch.float64]

INF = math.inf
NAN = math.nan

MAPPINGS = {
    "sparsemax": (smk.sparsemax, lambda x, dim: entmax_package.sparsemax(x, dim=dim)),
    "entmax15": (smk.entmax15, lambda x, dim: entmax_package.entmax15(x, dim=dim)),
    "entmax-1.5": (
        lambda x, axis=-1, **kw: smk.entmax(x, axis, alpha=1.5, **kw),
        lambda x, dim: entmax_package.entmax_bisect(x, alpha=1.5, dim=dim),
    ),
    "entmax-1.3": (
        lambda x, axis=-1, **kw: smk.entmax(x, axis, alpha=1.3, **kw),
        lambda x, dim: entmax_package.entmax_bisect(x, alpha=1.3, dim=dim),
    ),
    "entmax-2": (
        lambda x, axis=-1, **kw: smk.entmax(x, axis, alpha=2.0, **kw),
        lambda x, dim: entmax_package.sparsemax(x, dim=dim),
    ),
}
ALPHA = {"sparsemax": 2.0, "entmax15": 1.5, "entmax-1.5": 1.5, "entmax-1.3": 1.3, "entmax-2": 2.0}
TOL = {} if torch is None else {torch.float32: 2e-6, torch.float64: 1e-12}


def _rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------ against the entmax package


@requires_entmax
@requires_torch
@pytest.mark.parametrize("name", list(MAPPINGS))
@pytest.mark.parametrize("dtype", TORCH_FLOATS)
@pytest.mark.parametrize("shape, axis", [((7,), -1), ((4, 9), -1), ((3, 6, 5), 1), ((5, 3), 0)])
def test_values_and_gradients_match_entmax_package(name, dtype, shape, axis):
    ours, reference = MAPPINGS[name]
    rng = _rng(len(shape) * 10 + axis)
    x = torch.tensor(rng.standard_normal(shape) * 2, dtype=dtype)
    cotangent = torch.tensor(rng.standard_normal(shape), dtype=dtype)
    x_ours = x.clone().requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)
    y_ours = ours(x_ours, axis)
    y_ref = reference(x_ref, axis)
    assert y_ours.dtype == dtype
    # The package computes float32 in float32; ours in float64, rounded once.
    tol = TOL[dtype] if name in ("sparsemax", "entmax15", "entmax-2") else max(TOL[dtype], 1e-9)
    np.testing.assert_allclose(y_ours.detach().numpy(), y_ref.detach().numpy(), atol=tol, rtol=0)
    (y_ours * cotangent).sum().backward()
    (y_ref * cotangent).sum().backward()
    grad_tol = 5e-6 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(x_ours.grad.numpy(), x_ref.grad.numpy(), atol=grad_tol, rtol=0)


@requires_entmax
@requires_torch
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_zero_pattern_matches_entmax_package(name):
    ours, reference = MAPPINGS[name]
    x = _rng(1).standard_normal((50, 40)) * 3
    y = ours(x)
    y_ref = reference(torch.tensor(x), -1).numpy()
    np.testing.assert_array_equal(y == 0, y_ref == 0)
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=0, atol=1e-14)
    assert (y == 0).sum() > 0


def _full_sort_only(monkeypatch):
    from softmaxkit.sparse import _projection

    monkeypatch.setattr(_projection, "PARTIAL_MIN_LENGTH", 10**12)


@pytest.mark.parametrize("library", ["numpy", pytest.param("torch", marks=requires_torch)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spread", [3.0, 1e-3])
def test_sort_partial_sort_and_bisection_agree(monkeypatch, library, dtype, spread):
    # spread 1e-3 makes the support larger than the first candidates, so the
    # partial path has to grow.
    x = (_rng(2).standard_normal((3, 6000)) * spread).astype(dtype)
    if library == "torch":
        x = torch.tensor(x)
    tol = 1e-6 if dtype == "float32" else 1e-12

    def as_numpy(a):
        return a.numpy() if library == "torch" else a

    partial = {
        2.0: as_numpy(smk.sparsemax(x)),
        1.5: as_numpy(smk.entmax15(x)),
    }
    bisection = {alpha: as_numpy(smk.entmax(x, alpha=alpha)) for alpha in (2.0, 1.5)}
    # A per-row temperature takes the general path (scores shifted in the working
    # dtype first) instead of selecting in the input's dtype.
    ones = np.ones((3, 1), dtype=dtype)
    ones = torch.tensor(ones) if library == "torch" else ones
    general = {
        2.0: as_numpy(smk.sparsemax(x, temperature=ones)),
        1.5: as_numpy(smk.entmax15(x, temperature=ones)),
    }
    _full_sort_only(monkeypatch)
    full = {2.0: as_numpy(smk.sparsemax(x)), 1.5: as_numpy(smk.entmax15(x))}
    bisection_full = {alpha: as_numpy(smk.entmax(x, alpha=alpha)) for alpha in (2.0, 1.5)}
    for alpha in (2.0, 1.5):
        np.testing.assert_allclose(partial[alpha], full[alpha], atol=tol, rtol=0)
        np.testing.assert_allclose(general[alpha], full[alpha], atol=tol, rtol=0)
        np.testing.assert_allclose(bisection[alpha], full[alpha], atol=tol, rtol=0)
        np.testing.assert_allclose(bisection_full[alpha], full[alpha], atol=tol, rtol=0)
        if spread < 1:
            assert np.count_nonzero(full[alpha][0]) > sparse_module.INITIAL_CANDIDATES


@requires_entmax
@requires_torch
def test_partial_sort_does_not_sort_long_rows(monkeypatch):
    calls = []
    original = np.sort

    def counting_sort(a, *args, **kwargs):
        calls.append(np.shape(a))
        return original(a, *args, **kwargs)

    monkeypatch.setattr(np, "sort", counting_sort)
    x = _rng(3).standard_normal((2, 128256))
    y = smk.sparsemax(x)
    assert calls and all(shape[-1] < 128256 for shape in calls)
    ref = entmax_package.sparsemax(torch.tensor(x), dim=-1).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-12, rtol=0)


def test_alpha_two_is_sparsemax_and_alpha_one_is_softmax():
    x = _rng(4).standard_normal((6, 30)) * 2
    np.testing.assert_allclose(smk.entmax(x, alpha=2.0), smk.sparsemax(x), atol=1e-12, rtol=0)
    np.testing.assert_allclose(smk.entmax(x, alpha=1.5), smk.entmax15(x), atol=1e-12, rtol=0)
    np.testing.assert_array_equal(smk.entmax(x, alpha=1), smk.softmax(x))
    soft = smk.softmax(x)
    errors = [np.abs(smk.entmax(x, alpha=a) - soft).max() for a in (1.1, 1.01, 1.001, 1.0001)]
    assert all(b < a for a, b in zip(errors[:-1], errors[1:], strict=True))
    assert errors[-1] < 1e-3


def test_outputs_are_distributions_with_exact_zeros():
    x = _rng(5).standard_normal((20, 100)) * 3
    for y in (smk.sparsemax(x), smk.entmax15(x), smk.entmax(x, alpha=1.7)):
        assert np.all(y >= 0)
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=0, atol=1e-13)
        assert np.count_nonzero(y == 0) > 0
    # Exact zeros outside the support: entries below the threshold get 0.0.
    y = smk.sparsemax(x)
    support = y > 0
    tau = (np.where(support, x, 0).sum(-1) - 1) / support.sum(-1)
    np.testing.assert_array_equal(support, x > tau[:, None])


# ------------------------------------------------------------------ gradients


def _finite_difference(function, x, cotangent, h=1e-6):
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += h
        minus[i] -= h
        grad.reshape(-1)[i] = (
            np.sum(cotangent * function(plus.reshape(x.shape)))
            - np.sum(cotangent * function(minus.reshape(x.shape)))
        ) / (2 * h)
    return grad


@requires_torch
@pytest.mark.parametrize("alpha", [2.0, 1.5, 1.3, 1.0])
@pytest.mark.parametrize("axis, temperature", [(-1, 1.0), (0, 0.7), ((0, 2), 1.3)])
def test_vjp_matches_finite_differences(alpha, axis, temperature):
    rng = _rng(6)
    x = rng.standard_normal((3, 4, 2))
    cotangent = rng.standard_normal(x.shape)

    def mapping(v):
        if alpha == 2.0:
            return smk.sparsemax(v, axis, temperature=temperature)
        if alpha == 1.5:
            return smk.entmax15(v, axis, temperature=temperature)
        return smk.entmax(v, axis, alpha=alpha, temperature=temperature)

    y = mapping(x)
    if alpha == 2.0:
        analytic = smk.sparsemax_vjp(y, cotangent, axis, temperature=temperature)
    else:
        analytic = smk.entmax_vjp(y, cotangent, axis, alpha=alpha, temperature=temperature)
    numeric = _finite_difference(mapping, x, cotangent)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6, rtol=0)
    # The same formula behind PyTorch's autograd.
    leaf = torch.tensor(x, requires_grad=True)
    torch_y = {2.0: smk.sparsemax, 1.5: smk.entmax15}.get(alpha)
    if torch_y is None:
        out = smk.entmax(leaf, axis, alpha=alpha, temperature=temperature)
    else:
        out = torch_y(leaf, axis, temperature=temperature)
    (out * torch.tensor(cotangent)).sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), numeric, atol=1e-6, rtol=0)


def test_jax_gradient_under_jit_matches_numpy_vjp():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = _rng(7)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    cotangent = rng.standard_normal(x.shape).astype(np.float32)
    keep = rng.random(x.shape) > 0.2
    for mapping, vjp in [
        (smk.sparsemax, lambda y, g: smk.sparsemax_vjp(y, g, temperature=0.5)),
        (smk.entmax15, lambda y, g: smk.entmax_vjp(y, g, alpha=1.5, temperature=0.5)),
    ]:

        def objective(v, mapping=mapping):
            return jnp.sum(mapping(v, where=jnp.asarray(keep), temperature=0.5) * cotangent)

        grad = jax.jit(jax.grad(objective))(jnp.asarray(x))
        y = mapping(x, where=keep, temperature=0.5)
        np.testing.assert_allclose(np.asarray(grad), vjp(y, cotangent), atol=1e-6, rtol=0)
        assert np.all(np.asarray(grad)[~keep] == 0)


# ------------------------------------------------------------------ edges

ALL = [
    ("sparsemax", smk.sparsemax),
    ("entmax15", smk.entmax15),
    ("entmax-1.7", lambda x, *a, **k: smk.entmax(x, *a, alpha=1.7, **k)),
]


@pytest.mark.parametrize("name, mapping", ALL)
def test_edge_rows(name, mapping):
    x = np.array(
        [
            [-INF, -INF, -INF, -INF],
            [1.0, -INF, 3.0, 2.5],
            [INF, 1.0, INF, 2.0],
            [NAN, 1.0, 2.0, 3.0],
            [1e308, -1e308, 0.0, 5.0],
        ]
    )
    y = mapping(x)
    np.testing.assert_array_equal(y[0], 0.0)
    np.testing.assert_allclose(y[1], np.insert(mapping(np.array([1.0, 3.0, 2.5])), 1, 0.0))
    assert y[1, 1] == 0.0
    np.testing.assert_array_equal(y[2], [0.5, 0.0, 0.5, 0.0])
    assert np.all(np.isnan(y[3]))
    np.testing.assert_array_equal(y[4], [1.0, 0.0, 0.0, 0.0])


@requires_torch
@pytest.mark.parametrize("name, mapping", ALL)
def test_masked_rows_have_zero_output_and_gradient(name, mapping):
    x = torch.tensor([[-INF, -INF, -INF], [0.5, 1.0, 2.0], [0.3, 0.2, 0.1]], requires_grad=True)
    keep = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    y = mapping(x, where=keep)
    assert torch.all(y[0] == 0) and torch.all(y[2] == 0) and y[1, 1] == 0
    (y * torch.arange(3.0)).sum().backward()
    assert not torch.any(torch.isnan(x.grad))
    assert torch.all(x.grad[0] == 0) and torch.all(x.grad[2] == 0) and x.grad[1, 1] == 0
    deleted = mapping(np.array([0.5, 2.0]))
    np.testing.assert_allclose(y[1, [0, 2]].detach().numpy(), deleted, atol=1e-7)


@pytest.mark.parametrize("name, mapping", ALL)
def test_shapes_empty_and_zero_d(name, mapping):
    assert mapping(np.zeros((3, 0))).shape == (3, 0)
    assert mapping(np.zeros((0, 4))).shape == (0, 4)
    assert float(mapping(np.float64(2.5))) == 1.0
    assert np.isnan(mapping(np.float64(NAN)))
    assert float(mapping(np.float64(-INF))) == 0.0
    x = _rng(8).standard_normal((2, 3, 4))
    joint = mapping(x, axis=(1, 2))
    np.testing.assert_allclose(joint.reshape(2, 12), mapping(x.reshape(2, 12)), atol=1e-15)
    np.testing.assert_allclose(mapping(x, axis=None).sum(), 1.0)


@requires_torch
@pytest.mark.parametrize("name, mapping", ALL)
def test_half_precision_is_computed_in_float32(name, mapping):
    x32 = (_rng(9).standard_normal((4, 50)) * 2).astype(np.float32)
    x16 = x32.astype(np.float16)
    y16 = mapping(x16)
    assert y16.dtype == np.float16
    np.testing.assert_array_equal(y16, mapping(x16.astype(np.float32)).astype(np.float16))
    bf16 = torch.tensor(x32).to(torch.bfloat16)
    y_bf16 = mapping(bf16)
    assert y_bf16.dtype == torch.bfloat16
    expected = mapping(bf16.to(torch.float32)).to(torch.bfloat16)
    assert torch.equal(y_bf16, expected)


@pytest.mark.parametrize("name, mapping", ALL)
def test_temperature(name, mapping):
    x = np.array([[1.0, 3.0, 2.5, 3.0], [0.2, 0.1, -0.3, 0.0]])
    np.testing.assert_allclose(mapping(x, temperature=2.0), mapping(x / 2.0), atol=1e-15)
    np.testing.assert_array_equal(mapping(x, temperature=0.0)[0], [0, 0.5, 0, 0.5])
    np.testing.assert_array_equal(mapping(x, temperature=INF)[1], [0.25] * 4)
    per_row = np.array([[0.5], [4.0]])
    np.testing.assert_allclose(mapping(x, temperature=per_row), mapping(x / per_row), atol=1e-15)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1.0"):
        mapping(x, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        mapping(x, temperature=np.ones((2, 4)))


# ------------------------------------------------------------------ backends


def test_array_api_strict_and_dask():
    xps = pytest.importorskip("array_api_strict")
    da = pytest.importorskip("dask.array")
    x = _rng(10).standard_normal((6, 300)) * 2
    for mapping in (smk.sparsemax, smk.entmax15, lambda v: smk.entmax(v, alpha=1.2)):
        expected = mapping(x)
        strict = mapping(xps.asarray(x))
        assert type(strict).__module__.startswith("array_api_strict")
        np.testing.assert_allclose(np.asarray(strict), expected, atol=1e-14)
        lazy = mapping(da.from_array(x, chunks=(2, 100)))
        assert isinstance(lazy, da.Array)
        np.testing.assert_allclose(lazy.compute(), expected, atol=1e-14)
    keep = x > -1
    lazy = smk.sparsemax(
        da.from_array(x, chunks=(3, 50)),
        axis=-1,
        where=da.from_array(keep, chunks=(2, 300)),
        temperature=da.from_array(np.full((6, 1), 0.5)),
    )
    np.testing.assert_allclose(
        lazy.compute(), smk.sparsemax(x, where=keep, temperature=np.full((6, 1), 0.5))
    )


# ------------------------------------------------------------------ losses

LOSSES = [
    ("sparsemax", smk.sparsemax_loss, lambda x, t: entmax_package.sparsemax_loss(x, t)),
    ("entmax15", smk.entmax15_loss, lambda x, t: entmax_package.entmax15_loss(x, t)),
    (
        "entmax-1.3",
        lambda x, t, **k: smk.entmax_loss(x, t, alpha=1.3, **k),
        lambda x, t: entmax_package.entmax_bisect_loss(x, t, alpha=1.3),
    ),
]


@requires_entmax
@requires_torch
@pytest.mark.parametrize("name, loss, reference", LOSSES)
def test_losses_match_entmax_package(name, loss, reference):
    rng = _rng(11)
    x = torch.tensor(rng.standard_normal((8, 6)) * 2, requires_grad=True)
    target = torch.tensor(rng.integers(0, 6, 8))
    ours = loss(x, target, reduction="none")
    x_ref = x.detach().clone().requires_grad_(True)
    ref = reference(x_ref, target)
    np.testing.assert_allclose(ours.detach().numpy(), ref.detach().numpy(), atol=1e-10)
    ours.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), atol=1e-10)
    values = loss(rng.standard_normal((200, 5)) * 3, rng.integers(0, 5, 200), reduction="none")
    assert np.all(values >= 0)
    confident = np.array([[0.0, 9.0, 1.0], [5.0, 0.0, 0.0]])
    np.testing.assert_array_equal(loss(confident, [1, 0], reduction="none"), [0.0, 0.0])


@requires_torch
def test_loss_reductions_weights_and_ignore_index_follow_cross_entropy():
    # entmax_loss with alpha = 1 is the cross-entropy: PyTorch's is the reference
    # for weight, ignore_index and the reductions.
    rng = _rng(12)
    x = torch.tensor(rng.standard_normal((10, 4)), requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 7, 1, 7, 2, 0, 7])
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        ours = smk.entmax_loss(
            x, target, alpha=1.0, weight=weight, ignore_index=7, reduction=reduction
        )
        x_ref = x.detach().clone().requires_grad_(True)
        ref = torch.nn.functional.cross_entropy(
            x_ref,
            target,
            weight=weight,
            ignore_index=7,
            reduction=reduction,
        )
        np.testing.assert_allclose(ours.detach().numpy(), ref.detach().numpy(), atol=1e-12)
        ours.sum().backward()
        ref.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), atol=1e-12)
        x.grad = None
    all_ignored = smk.sparsemax_loss(x, torch.full((10,), -100))
    assert all_ignored.item() == 0.0
    all_ignored.backward()
    assert torch.all(x.grad == 0)


@requires_torch
def test_loss_gradient_matches_finite_differences_and_masks():
    rng = _rng(13)
    x = rng.standard_normal((3, 5))
    target = np.array([1, 4, 0])
    keep = np.ones((3, 5), dtype=bool)
    keep[0, 2] = False
    for alpha in (2.0, 1.5, 1.4):

        def loss(v, alpha=alpha):
            return smk.entmax_loss(
                v, target, alpha=alpha, where=keep, temperature=0.8, reduction="sum"
            )

        leaf = torch.tensor(x, requires_grad=True)
        smk.entmax_loss(
            leaf,
            torch.tensor(target),
            alpha=alpha,
            where=torch.tensor(keep),
            temperature=0.8,
            reduction="sum",
        ).backward()
        numeric = _finite_difference(lambda v: np.array(loss(v)), x, np.array(1.0))
        np.testing.assert_allclose(leaf.grad.numpy(), numeric, atol=1e-6)
        assert leaf.grad[0, 2] == 0
    masked_target = smk.sparsemax_loss(x, [2, 4, 0], where=keep, reduction="none")
    assert masked_target[0] == INF and np.all(np.isfinite(masked_target[1:]))


# ------------------------------------------------------------------ errors


def test_errors():
    x = np.zeros((2, 3))
    for alpha in (0.5, NAN, -1.0):
        with pytest.raises(ValueError, match="alpha"):
            smk.entmax(x, alpha=alpha)
    with pytest.raises(ValueError, match="alpha must be finite"):
        smk.entmax(x, alpha=INF)
    with pytest.raises(TypeError, match="alpha"):
        smk.entmax(x, alpha="2")
    with pytest.raises(ValueError, match="n_iter"):
        smk.entmax(x, n_iter=0)
    with pytest.raises(ValueError, match="tol"):
        smk.entmax(x, tol=-1.0)
    with pytest.raises(TypeError, match="complex"):
        smk.sparsemax(np.zeros(3, dtype=complex))
    with pytest.raises(TypeError, match="where must be a boolean"):
        smk.sparsemax(x, where=np.ones((2, 3)))
    with pytest.raises(ValueError, match="reduction"):
        smk.sparsemax_loss(x, [0, 1], reduction="avg")
    with pytest.raises(ValueError, match="target of shape"):
        smk.sparsemax_loss(x, [0, 1, 2])
    with pytest.raises(TypeError, match="class indices"):
        smk.entmax15_loss(x, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"target must be in \[0, 3\)"):
        smk.entmax15_loss(x, [0, 3])
    with pytest.raises(ValueError, match="weight must have shape"):
        smk.sparsemax_loss(x, [0, 1], weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="cotangent"):
        smk.sparsemax_vjp(x, np.zeros(3))


def test_the_figure_is_in_plot_alone():
    # One figure API: softmaxkit.plot; the sparse package does not draw.
    with pytest.raises(AttributeError, match=r"removed: the figure is softmaxkit\.plot\.sparse"):
        sparse_module.plot_sparse  # noqa: B018
    assert "plot_sparse" not in sparse_module.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        sparse_module.nothing  # noqa: B018


@pytest.mark.parametrize("library", ["numpy", pytest.param("torch", marks=requires_torch)])
def test_long_uniform_row_grows_the_candidates_to_the_whole_row(library):
    # Every entry is in the support: the candidates grow until they are the row.
    x = np.zeros((2, 128256), dtype=np.float16)
    x[1, :5] = 10.0
    if library == "torch":
        x = torch.tensor(x)
    for mapping in (smk.sparsemax, smk.entmax15, lambda v: smk.entmax(v, alpha=1.2)):
        y = mapping(x)
        y = np.asarray(y.float() if library == "torch" else y, dtype=np.float64)
        np.testing.assert_array_equal(y[0], float(np.float16(1 / 128256)))
        assert np.all(y[1, 5:] == 0) and np.all(y[1, :5] > 0)


@pytest.mark.parametrize("library", ["numpy", pytest.param("torch", marks=requires_torch)])
def test_float32_is_within_a_few_ulp_of_float64(library):
    x = (_rng(14).standard_normal((16, 5000)) * 3).astype(np.float32)
    for mapping in (smk.sparsemax, smk.entmax15):
        exact = mapping(x.astype(np.float64))
        result = mapping(torch.tensor(x)).numpy() if library == "torch" else mapping(x)
        ulps = np.abs(result - exact) / np.spacing(exact.astype(np.float32))
        assert ulps[exact > 0].max() <= 3
        np.testing.assert_array_equal(result == 0, exact == 0)
