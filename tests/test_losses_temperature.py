"""cross_entropy at tiny and huge temperatures, on every path, against mpmath.

As T -> 0 the loss of a row whose target is at the (unique) maximum tends to 0 and its
gradient, ``(softmax(x / T) - onehot) / T``, to 0 as well (every entry is at most
``exp(-d / T) / T`` for the gap ``d`` to the maximum); with the target below the
maximum the loss grows like ``(max - x_t) / T`` and the gradient like ``1 / T``, which
leave the dtype's range for a small enough T: the honest value there is ``±inf``,
never NaN. ``T = 0`` and ``T = inf`` are the greedy and uniform limits, whose loss is
constant in the logits (gradient 0). The reference below is written from these
formulas in mpmath, sharing no code with softmaxkit.

Paths: the NumPy fast kernel block (class indices, no mask, no label smoothing), the
NumPy block runner (here forced by an all-True mask, or by a temperature array), and
the generic array-API path (array_api_strict).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import losses

INF = math.inf

TEMPERATURES = [1e-300, 1e-30, 1e-8, 1.0, 1e30, 1e300, INF, 0.0]

# Target at the maximum, below it (twice), and at a tie of the maximum.
LOGITS = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, -1.0, 0.5], [2.0, 2.0, 0.0]])
INDEX = np.array([2, 0, 1, 0])
PROBABILITIES = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.25, 0.5, 0.25], [0.5, 0.5, 0.0]])
WEIGHT = np.array([0.5, 2.0, 1.25])

OPTIONS = {
    "plain": dict(),
    "weight": dict(weight=WEIGHT),
    "z_loss": dict(z_loss=1e-3),
    "softcap": dict(softcap=2.5),
    "smoothing": dict(label_smoothing=0.2),
    "probabilities": dict(probabilities=True),
    "everything": dict(weight=WEIGHT, label_smoothing=0.1, z_loss=1e-2, softcap=4.0),
    "probabilities_everything": dict(
        probabilities=True, weight=WEIGHT, label_smoothing=0.3, z_loss=1e-3, softcap=2.0
    ),
}


def _mp_row(row, target, temperature, *, weight, smoothing, z_loss, softcap, probabilities):
    """(loss, gradient) of one row as mpmath numbers, from the definitions."""
    n = len(row)
    x = [mpmath.mpf(float(v)) for v in row]
    if softcap is None:
        capped, derivative = x, [mpmath.mpf(1)] * n
    else:
        c = mpmath.mpf(softcap)
        capped = [c * mpmath.tanh(v / c) for v in x]
        derivative = [1 - mpmath.tanh(v / c) ** 2 for v in x]
    if temperature == 0.0:
        top = max(capped)
        tied = [v == top for v in capped]
        log_p = [-mpmath.log(sum(tied)) if t else -mpmath.inf for t in tied]
        lse = mpmath.inf if top > 0 else -mpmath.inf if top < 0 else mpmath.log(sum(tied))
    elif temperature == INF:
        log_p = [-mpmath.log(n)] * n
        lse = mpmath.log(n)
    else:
        # The differences to the maximum first: lse itself (3e300 at T = 1e-300) has no
        # digits left for log(2) at a tie.
        top = max(capped)
        shifted = [(v - top) / mpmath.mpf(temperature) for v in capped]
        log_total = mpmath.log(mpmath.fsum(mpmath.exp(d) for d in shifted))
        log_p = [d - log_total for d in shifted]
        lse = top / mpmath.mpf(temperature) + log_total
    support = [v != -mpmath.inf for v in log_p]
    share = mpmath.mpf(smoothing) / sum(support)
    w = [mpmath.mpf(1)] * n if weight is None else [mpmath.mpf(float(v)) for v in weight]
    if probabilities:
        q = [
            ((1 - mpmath.mpf(smoothing)) * mpmath.mpf(float(t)) + (share if s else 0)) * wj
            for t, s, wj in zip(target, support, w)
        ]
        z_weight = mpmath.mpf(1)
    else:
        q = [
            (1 - mpmath.mpf(smoothing)) * w[target] * (j == target) + (share * w[j] if s else 0)
            for j, s in enumerate(support)
        ]
        z_weight = w[target]
    loss = mpmath.fsum(-qj * lp for qj, lp in zip(q, log_p) if qj != 0)
    if z_loss:
        loss += mpmath.mpf(z_loss) * z_weight * lse**2
    if temperature in (0.0, INF):
        return loss, [mpmath.mpf(0)] * n
    coefficient = mpmath.fsum(q) + 2 * mpmath.mpf(z_loss) * z_weight * lse
    gradient = [
        (coefficient * mpmath.exp(lp) - qj) / mpmath.mpf(temperature) * d
        for lp, qj, d in zip(log_p, q, derivative)
    ]
    return loss, gradient


def _reference(temperature, dtype, options):
    options = dict(options)
    probabilities = options.pop("probabilities", False)
    targets = PROBABILITIES if probabilities else INDEX
    with mpmath.workdps(50):
        rows = [
            _mp_row(
                row,
                target,
                temperature,
                weight=options.get("weight"),
                smoothing=options.get("label_smoothing", 0.0),
                z_loss=options.get("z_loss", 0.0),
                softcap=options.get("softcap"),
                probabilities=probabilities,
            )
            for row, target in zip(LOGITS, targets)
        ]
        with np.errstate(over="ignore"):
            loss = np.array([float(r[0]) for r in rows]).astype(dtype)
            grad = np.array([[float(g) for g in r[1]] for r in rows]).astype(dtype)
    return loss, grad


def _call(path, temperature, dtype, options):
    options = dict(options)
    probabilities = options.pop("probabilities", False)
    logits = LOGITS.astype(dtype)
    target = PROBABILITIES.astype(dtype) if probabilities else INDEX
    call = dict(options, reduction="none", return_grad=True, temperature=temperature)
    if path == "fast":
        return smk.cross_entropy(logits, target, **call)
    if path == "masked_blocks":
        return smk.cross_entropy(logits, target, where=np.ones(3, dtype=bool), **call)
    if path == "temperature_array":
        call["temperature"] = np.full((len(LOGITS), 1), temperature)
        return smk.cross_entropy(logits, target, **call)
    xps = pytest.importorskip("array_api_strict")
    if "weight" in call:
        call["weight"] = xps.asarray(call["weight"])
    loss, grad = smk.cross_entropy(xps.asarray(logits), xps.asarray(target), **call)
    return np.asarray(loss._array), np.asarray(grad._array)


def _assert_close(got, expected, dtype, scale, what):
    """Within 8 ulp of each entry plus 8 ulp of the row's largest entry (``scale``)."""
    assert got.dtype == dtype, what
    assert not np.isnan(got).any(), f"{what}: NaN in {got}"
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(got[infinite], expected[infinite], err_msg=what)
    finite = ~infinite
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).smallest_subnormal
    difference = np.abs(got[finite].astype(np.float64) - expected[finite].astype(np.float64))
    bound = 8 * eps * (np.abs(expected[finite]).astype(np.float64) + scale[finite]) + tiny
    assert np.all(difference <= bound), f"{what}: got {got}, expected {expected}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("temperature", TEMPERATURES, ids=lambda t: f"T={t:g}")
@pytest.mark.parametrize("path", ["fast", "masked_blocks", "temperature_array", "generic"])
def test_extreme_temperatures_match_mpmath(path, temperature, dtype):
    for name, options in OPTIONS.items():
        loss, grad = _call(path, temperature, dtype, options)
        expected_loss, expected_grad = _reference(temperature, dtype, options)
        what = f"{path}, {name}, T={temperature}, {np.dtype(dtype).name}"
        _assert_close(loss, expected_loss, dtype, np.zeros_like(expected_loss, float), what)
        with np.errstate(invalid="ignore"):
            row_scale = np.max(np.abs(expected_grad.astype(np.float64)), axis=-1, keepdims=True)
        row_scale = np.where(np.isinf(row_scale), 0.0, row_scale)
        _assert_close(grad, expected_grad, dtype, np.broadcast_to(row_scale, grad.shape), what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_target_at_the_maximum_has_zero_gradient_in_the_small_temperature_limit(dtype):
    # p_t rounds to 1 long before the limit: the entry (p_t - 1) / T must not become the
    # rounding error of the gain 1 / T (1.5e22 for float32 at T = 1e-30), nor NaN.
    logits = np.array([[1.0, 2.0, 3.0]], dtype=dtype)
    for temperature in (1e-300, 1e-30, 1e-8):
        for options in (dict(), dict(where=np.ones(3, dtype=bool)), dict(weight=WEIGHT)):
            loss, grad = smk.cross_entropy(
                logits, np.array([2]), temperature=temperature, return_grad=True, **options
            )
            assert loss == 0.0
            np.testing.assert_array_equal(grad, np.zeros((1, 3), dtype=dtype))


def test_float32_confident_prediction_keeps_its_small_gradient():
    # At T = 1 the same cancellation: p_t = 1 - 1e-10 is 1 in float32, while the entry
    # p_t - 1 is -1e-10 (as the other entries say: they sum to 1e-10).
    logits = np.array([[0.0, -23.0259, -30.0]], dtype=np.float32)
    for options in (dict(), dict(where=np.ones(3, dtype=bool)), dict(weight=np.ones(3))):
        _, grad = smk.cross_entropy(logits, np.array([0]), return_grad=True, **options)
        with mpmath.workdps(50):
            row = [mpmath.mpf(float(v)) for v in logits[0]]
            total = mpmath.fsum(mpmath.exp(v) for v in row)
            expected = float(mpmath.exp(row[0]) / total - 1)
        assert abs(grad[0, 0] - expected) <= 2 * np.spacing(np.float32(abs(expected)))
        np.testing.assert_allclose(grad[0, 0], -grad[0, 1:].sum(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mean_reduction_at_a_tiny_temperature(dtype):
    loss, grad = smk.cross_entropy(LOGITS.astype(dtype), INDEX, temperature=1e-30, return_grad=True)
    row_losses, row_grads = _reference(1e-30, np.float64, {})
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, row_losses.mean(), rtol=8 * eps)
    np.testing.assert_allclose(grad, row_grads / len(LOGITS), rtol=8 * eps)


def test_fast_path_hands_gains_beyond_the_kernels_range_to_the_general_path(monkeypatch):
    # The float32 kernel writes NaN for gains above about 2**64; softmaxkit does not ask
    # it to, and the general path gives the result.
    calls = []
    original = losses._numpy_blocks._block

    def spy(*args, **kwargs):
        calls.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(losses._numpy_blocks, "_block", spy)
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    _, grad = smk.cross_entropy(logits, np.array([0]), temperature=1e-25, return_grad=True)
    assert calls == [True]
    np.testing.assert_allclose(grad, [[-1e25, 0.0, 1e25]], rtol=1e-6)


@pytest.mark.parametrize("path", ["fast", "masked_blocks", "temperature_array", "generic"])
def test_ignored_and_zero_weight_rows_have_a_gradient_of_positive_zeros(path):
    # The target's entry w * expm1(log p_t) is -0 for w = 0: such rows must give +0, as
    # cross_entropy's docstring prints. Row 1 is ignored; row 3's target has weight 0.
    target = np.array([2, -100, 1, 0])
    for options, quiet in ((dict(), [1]), (dict(weight=np.array([0.0, 1.0, 1.0])), [1, 3])):
        _, grad = _call_with_target(path, target, options)
        assert np.all(grad[quiet] == 0) and not np.signbit(grad[quiet]).any(), (options, grad)


def _call_with_target(path, target, options):
    call = dict(options, return_grad=True, reduction="mean")
    if path == "fast":
        return smk.cross_entropy(LOGITS, target, **call)
    if path == "masked_blocks":
        return smk.cross_entropy(LOGITS, target, where=np.ones(3, dtype=bool), **call)
    if path == "temperature_array":
        return smk.cross_entropy(LOGITS, target, temperature=np.ones((len(LOGITS), 1)), **call)
    xps = pytest.importorskip("array_api_strict")
    if "weight" in call:
        call["weight"] = xps.asarray(call["weight"])
    loss, grad = smk.cross_entropy(xps.asarray(LOGITS), xps.asarray(target), **call)
    return np.asarray(loss._array), np.asarray(grad._array)
