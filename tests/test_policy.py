"""Tests of softmaxkit.policy: SoftmaxPolicy and the temperature schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from softmaxkit import SoftmaxPolicy
from softmaxkit.policy import constant, exponential, linear


def test_constant_schedule():
    schedule = constant()
    assert [schedule(0.7, step) for step in (0, 1, 10**6)] == [0.7, 0.7, 0.7]


def test_linear_schedule_reaches_the_end_and_stays():
    schedule = linear(end=0.5, steps=4)
    values = [schedule(2.5, step) for step in range(7)]
    # 2.5, 2.0, 1.5, 1.0, 0.5 then 0.5: a straight line from start to end.
    np.testing.assert_allclose(values, [2.5, 2.0, 1.5, 1.0, 0.5, 0.5, 0.5], rtol=1e-15)
    assert linear(end=3.0, steps=2)(1.0, 1) == 2.0


def test_exponential_schedule_with_floor():
    schedule = exponential(decay=0.9, floor=0.05)
    for step in (0, 1, 5, 20, 100, 1000):
        expected = max(0.05, 2.0 * math.exp(step * math.log(0.9)))
        assert schedule(2.0, step) == pytest.approx(expected, rel=1e-12)
    assert schedule(2.0, 10_000) == 0.05
    assert exponential(decay=0.5)(1.0, 2000) == 0.0


def test_schedules_of_per_row_temperatures():
    start = np.array([[1.0], [4.0]])
    np.testing.assert_allclose(exponential(decay=0.5, floor=0.6)(start, 2), [[0.6], [1.0]])
    np.testing.assert_allclose(linear(end=0.0, steps=4)(start, 1), [[0.75], [3.0]])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: linear(end=-1.0, steps=3), "end must be >= 0, got -1.0"),
        (lambda: linear(end=0.1, steps=0), "steps must be >= 1, got 0"),
        (lambda: exponential(decay=1.5), r"decay must be in \(0, 1\], got 1.5"),
        (lambda: exponential(decay=0.0), r"decay must be in \(0, 1\]"),
        (lambda: exponential(decay=0.9, floor=-0.1), "floor must be >= 0, got -0.1"),
        (lambda: constant()(1.0, -1), "step must be >= 0, got -1"),
        (lambda: SoftmaxPolicy(temperature=-2.0), "temperature must be >= 0, got -2.0"),
        (lambda: SoftmaxPolicy(temperature=math.nan), "temperature must be >= 0"),
    ],
)
def test_schedule_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_policy_rejects_a_foreign_schedule():
    with pytest.raises(TypeError, match="schedule must be made by"):
        SoftmaxPolicy(schedule=lambda step: 1.0)


def test_probabilities_are_the_softmax_of_q_over_t():
    q = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0]])
    policy = SoftmaxPolicy(temperature=0.5)
    np.testing.assert_allclose(
        policy.probabilities(q), scipy.special.softmax(q / 0.5, axis=-1), rtol=1e-14
    )
    per_row = SoftmaxPolicy(temperature=np.array([[0.5], [2.0]]))
    expected = scipy.special.softmax(q / np.array([[0.5], [2.0]]), axis=-1)
    np.testing.assert_allclose(per_row.probabilities(q), expected, rtol=1e-14)


def test_select_follows_the_probabilities():
    q = np.array([0.2, 1.0, -0.4, 0.6])
    policy = SoftmaxPolicy(temperature=0.8)
    rng = np.random.default_rng(1)
    batch = np.tile(q, (50_000, 1))
    actions = policy.select(batch, rng=rng)
    counts = np.bincount(actions, minlength=4)
    expected = 50_000 * scipy.special.softmax(q / 0.8)
    assert scipy.stats.chisquare(counts, expected).pvalue > 1e-6


def test_select_advances_the_schedule():
    policy = SoftmaxPolicy(temperature=1.0, schedule=exponential(decay=0.5, floor=0.1))
    q = np.array([0.0, 1.0])
    temperatures = []
    for _ in range(6):
        temperatures.append(policy.temperature)
        policy.select(q, rng=0)
    assert temperatures == [1.0, 0.5, 0.25, 0.125, 0.1, 0.1]
    assert policy.step == 6
    policy.reset()
    assert policy.step == 0 and policy.temperature == 1.0
    assert "exponential(decay=0.5, floor=0.1)" in repr(policy)


def test_greedy_policy():
    q = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    policy = SoftmaxPolicy(temperature=0.0)
    # select: the lowest index among ties; probabilities: ties share the mass.
    np.testing.assert_array_equal(policy.select(q, rng=0), [1, 0])
    np.testing.assert_allclose(policy.probabilities(q), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_masked_actions_are_never_selected():
    q = np.zeros((10_000, 4))
    available = np.array([True, False, True, False])
    actions = SoftmaxPolicy(temperature=5.0).select(q, rng=3, where=available)
    assert set(np.unique(actions)) == {0, 2}


def test_policy_on_torch():
    torch = pytest.importorskip("torch")
    q = torch.tensor([[0.0, 1.0, 2.0]])
    policy = SoftmaxPolicy(temperature=1.0, schedule=linear(end=0.0, steps=1))
    action = policy.select(q, rng=torch.Generator().manual_seed(0))
    assert isinstance(action, torch.Tensor) and action.shape == (1,)
    assert int(policy.select(q, rng=0)) == 2


def test_bandit_example_runs_and_ranks_the_agents(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "bandit.py"
    spec = importlib.util.spec_from_file_location("bandit_example", path)
    bandit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bandit)
    results = bandit.main(["--runs", "300", "--steps", "200", "--no-plot", "--seed", "1"])
    assert "softmax T=0.1" in capsys.readouterr().out
    late = {label: reward[-50:].mean() for label, (reward, _) in results.items()}
    # A moderate temperature exploits what it learnt; a hot one keeps exploring.
    assert late["softmax T=0.1"] > late["softmax T=1"] > late["softmax T=5"]
    optimal = results["softmax T=0.1"][1]
    assert optimal[-50:].mean() > optimal[:5].mean()
