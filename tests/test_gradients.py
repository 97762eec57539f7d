"""Tests of softmaxkit.gradients: against PyTorch autograd and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from optional import requires_torch, torch

import softmaxkit as smk

INF = math.inf


def _torch_vjp(function, x, cotangent, axis):
    inputs = torch.from_numpy(x.copy()).requires_grad_()
    output = function(inputs, dim=axis)
    output.backward(torch.from_numpy(cotangent))
    return inputs.grad.numpy()


@requires_torch
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_vjp_matches_torch_autograd(axis):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)) * 3
    cotangent = rng.standard_normal((3, 4, 5))
    ours = smk.softmax_vjp(smk.softmax(x, axis), cotangent, axis)
    expected = _torch_vjp(torch.softmax, x, cotangent, axis)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-16)


@requires_torch
@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_vjp_matches_torch_autograd(axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5)) * 3
    cotangent = rng.standard_normal((6, 5))
    ours = smk.log_softmax_vjp(smk.log_softmax(x, axis), cotangent, axis)
    expected = _torch_vjp(torch.log_softmax, x, cotangent, axis)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-16)


@requires_torch
def test_softmax_jacobian_matches_torch_and_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4))
    jacobian = smk.softmax_jacobian(x)
    assert jacobian.shape == (2, 4, 4)
    for row in range(2):
        expected = torch.autograd.functional.jacobian(
            lambda v: torch.softmax(v, dim=-1), torch.from_numpy(x[row])
        ).numpy()
        np.testing.assert_allclose(jacobian[row], expected, rtol=1e-13, atol=1e-17)
        step = 1e-6
        for j in range(4):
            up, down = x[row].copy(), x[row].copy()
            up[j] += step
            down[j] -= step
            column = (smk.softmax(up) - smk.softmax(down)) / (2 * step)
            np.testing.assert_allclose(jacobian[row][:, j], column, rtol=1e-6, atol=1e-10)


def test_softmax_jacobian_of_a_class_axis_first():
    x = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    np.testing.assert_allclose(smk.softmax_jacobian(x, axis=0), smk.softmax_jacobian(x.T))


def test_vjps_are_finite_and_zero_at_neg_inf_and_masked_entries():
    x = np.array([[0.0, -INF, 1.0], [-INF, -INF, -INF]])
    cotangent = np.array([[1.0, 2.0, -1.0], [1.0, 1.0, 1.0]])
    probs_grad = smk.softmax_vjp(smk.softmax(x), cotangent)
    assert np.all(np.isfinite(probs_grad)) and probs_grad[0, 1] == 0 and np.all(probs_grad[1] == 0)
    where = np.array([True, False, True])
    log_probs = smk.log_softmax([0.0, 5.0, 1.0], where=where)
    log_grad = smk.log_softmax_vjp(log_probs, np.array([1.0, 0.0, -1.0]))
    assert np.all(np.isfinite(log_grad)) and log_grad[1] == 0
    assert np.all(np.isfinite(smk.softmax_jacobian(x)))
    assert np.all(smk.softmax_jacobian(x)[0][1] == 0)


@requires_torch
def test_vjps_on_other_libraries_keep_the_library():
    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray([[0.5, 1.0, -2.0]])
    grad = xps.asarray([[1.0, 0.0, 0.0]])
    ours = smk.softmax_vjp(smk.softmax(x), grad)
    assert isinstance(ours, type(x))
    np.testing.assert_allclose(
        np.asarray(ours),
        smk.softmax_vjp(smk.softmax(np.asarray(x)), np.asarray(grad)),
        rtol=1e-15,
    )
    tensor = torch.tensor([[0.5, 1.0, -2.0]], dtype=torch.float32)
    result = smk.log_softmax_vjp(smk.log_softmax(tensor), torch.ones(1, 3))
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32


def test_gradient_helpers_reject_bad_grad_shapes():
    with pytest.raises(ValueError, match="grad"):
        smk.softmax_vjp(np.ones((2, 3)) / 3, np.ones((2, 4)))
    with pytest.raises(TypeError, match="axis"):
        smk.softmax_jacobian(np.ones((2, 3)), axis=(0, 1))
