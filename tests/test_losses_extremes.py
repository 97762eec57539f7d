"""No RuntimeWarning and no NaN from finite input, at the extremes of every option.

pytest turns RuntimeWarning into an error (pyproject.toml): each call below fails on
any that escapes. An overflow gives the honest ``inf``; NaN comes only from NaN input.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import softmaxkit as smk

LOGITS = np.array(
    [
        [1.0, 2.0, 3.0, 0.0],
        [1e308, -1e308, 0.0, 5.0],
        [3e38, -3e38, 1e-310, -1.0],
        [-745.0, 710.0, 88.0, -88.0],
    ]
)
INDEX = np.array([0, 1, 2, 3])
PROBABILITIES = np.full((4, 4), 0.25)

OPTIONS = dict(
    temperature=[1.0, 5e-324, 1e-300, 1e300],
    weight=[None, np.full(4, 1e300), np.array([0.0, 1e-300, 1.0, 1e300])],
    z_loss=[0.0, 1e300],
    softcap=[None, 1e-300, 1e300],
    label_smoothing=[0.0, 1.0],
    reduction=["mean", "sum"],
)


def _calls():
    names = list(OPTIONS)
    for values in itertools.product(*OPTIONS.values()):
        yield dict(zip(names, values))


@pytest.mark.parametrize("library", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["index", "probabilities"])
def test_cross_entropy_at_the_extremes(library, dtype, kind):
    xp = np if library == "numpy" else pytest.importorskip("array_api_strict")
    with np.errstate(over="ignore"):
        logits = LOGITS.astype(dtype)
    target = INDEX if kind == "index" else PROBABILITIES.astype(dtype)
    for options in _calls():
        if options["weight"] is not None:
            options["weight"] = xp.asarray(options["weight"])
        loss, grad = smk.cross_entropy(
            xp.asarray(logits), xp.asarray(target), return_grad=True, **options
        )
        loss, grad = np.asarray(loss), np.asarray(grad)
        assert not np.isnan(loss).any() and not np.isnan(grad).any(), options


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nll_loss_with_weights_beyond_the_dtype(dtype):
    # Weights of 1e300 with float32 log-probabilities: -w_t does not fit in float32,
    # the mean's gradient -w_t / sum(w) = -1 does.
    log_probs = np.log(np.array([[0.25, 0.25, 0.5]])).astype(dtype)
    for smoothing in (0.0, 0.5):
        loss, grad = smk.nll_loss(
            log_probs,
            np.array([2]),
            weight=np.full(3, 1e300),
            label_smoothing=smoothing,
            return_grad=True,
        )
        expected = -(1 - smoothing) * np.array([0, 0, 1.0]) - smoothing / 3
        np.testing.assert_allclose(grad[0], expected, rtol=1e-6)
        assert math.isfinite(loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_losses_and_divergences_at_the_extremes(dtype):
    with np.errstate(over="ignore"):
        x = np.array([[0.0, 1e308, -1e308, 3e38], [-3e38, 710.0, -745.0, 1e-310]]).astype(dtype)
    t = np.array([[0.0, 1.0, 0.5, 1.0], [1.0, 0.0, 0.25, 0.0]], dtype=dtype)
    big = np.full((2, 1), 1e300)
    results = [
        smk.sigmoid(x),
        smk.log_sigmoid(x),
        smk.binary_cross_entropy_with_logits(x, t, reduction="none"),
        smk.binary_cross_entropy_with_logits(x, t, pos_weight=np.full(4, 1e300), weight=big),
        smk.binary_cross_entropy(smk.sigmoid(x), t, weight=big, reduction="sum"),
        smk.kl_divergence(x, x[::-1]),
        smk.entropy(x),
    ]
    for result in results:
        assert not np.isnan(result).any()
