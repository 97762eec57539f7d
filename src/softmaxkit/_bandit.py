"""The 10-armed testbed (Sutton & Barto, Reinforcement Learning, 2nd ed., chapter 2).

Each run is a 10-armed bandit whose true action values q*(a) are drawn from N(0, 1);
pulling arm a pays a reward drawn from N(q*(a), 1). The agent keeps sample-average
estimates Q(a) (starting at 0) and chooses with softmax (Boltzmann) action selection,
:class:`softmaxkit.SoftmaxPolicy`, at several temperatures, and, as the classic
baseline, with epsilon-greedy. All runs and all temperatures advance together as one
batch (one row of Q-values per run and temperature, one temperature per row), so the
whole experiment is a loop over the steps only.

``softmax bandit -o bandit.png`` runs it from a terminal; ``examples/bandit.py`` is
the same as a script.

Examples
--------
>>> from softmaxkit._bandit import run_testbed
>>> results = run_testbed(runs=20, steps=50, temperatures=(0.1, 1.0))
>>> list(results)
['softmax T=0.1', 'softmax T=1', 'ε-greedy ε=0.1']
>>> reward, optimal = results["softmax T=0.1"]
>>> reward.shape, optimal.shape
((50,), (50,))
"""

from __future__ import annotations

import numpy as np

from .policy import SoftmaxPolicy

__all__ = ["run_testbed", "figure", "summary", "TEMPERATURES", "EPSILON", "ARMS"]

TEMPERATURES = (0.01, 0.1, 0.5, 1.0, 2.0, 5.0)
EPSILON = 0.1
ARMS = 10


def run_testbed(runs=2000, steps=1000, temperatures=TEMPERATURES, epsilon=EPSILON, seed=0):
    """Average reward and fraction of optimal actions per step, for each agent.

    Returns a dict mapping an agent's label to ``(average_reward, optimal_fraction)``,
    two arrays of length ``steps``. Every agent faces the same ``runs`` bandits; the
    same ``seed`` gives the same results.
    """
    rng = np.random.default_rng(seed)
    agents = len(temperatures) + 1  # the softmax agents, then epsilon-greedy
    q_star = rng.normal(size=(runs, ARMS))
    best = np.argmax(q_star, axis=1)
    rows = agents * runs
    true_values = np.tile(q_star, (agents, 1))
    optimal = np.tile(best, agents)
    estimates = np.zeros((rows, ARMS))
    pulls = np.zeros((rows, ARMS))
    softmax_rows = len(temperatures) * runs
    per_row_temperature = np.repeat(np.asarray(temperatures, dtype=np.float64), runs)[:, None]
    policy = SoftmaxPolicy(temperature=per_row_temperature)
    reward_sum = np.zeros((agents, steps))
    optimal_sum = np.zeros((agents, steps))
    row_index = np.arange(rows)
    greedy_rows = slice(softmax_rows, rows)
    for step in range(steps):
        actions = np.empty(rows, dtype=np.int64)
        actions[:softmax_rows] = policy.select(estimates[:softmax_rows], rng=rng)
        # Epsilon-greedy, ties among the greedy arms broken at random.
        greedy_estimates = estimates[greedy_rows]
        is_max = greedy_estimates == greedy_estimates.max(axis=1, keepdims=True)
        tie_break = np.where(is_max, rng.random(is_max.shape), -1.0)
        greedy = np.argmax(tie_break, axis=1)
        explore = rng.random(runs) < epsilon
        actions[greedy_rows] = np.where(explore, rng.integers(0, ARMS, runs), greedy)

        rewards = rng.normal(true_values[row_index, actions], 1.0)
        pulls[row_index, actions] += 1
        chosen = estimates[row_index, actions]
        estimates[row_index, actions] = chosen + (rewards - chosen) / pulls[row_index, actions]
        reward_sum[:, step] = rewards.reshape(agents, runs).sum(axis=1)
        optimal_sum[:, step] = (actions == optimal).reshape(agents, runs).sum(axis=1)
    labels = [f"softmax T={t:g}" for t in temperatures] + [f"ε-greedy ε={epsilon:g}"]
    return {label: (reward_sum[i] / runs, optimal_sum[i] / runs) for i, label in enumerate(labels)}


def summary(results) -> str:
    """A text table of each agent's average reward and % optimal action over the last 10%."""
    steps = len(next(iter(results.values()))[0])
    last = max(1, steps // 10)
    lines = [f"{'agent':<20} {'reward (last 10%)':>18} {'% optimal (last 10%)':>21}"]
    for label, (reward, optimal) in results.items():
        lines.append(
            f"{label:<20} {reward[-last:].mean():>18.3f} {100 * optimal[-last:].mean():>20.1f}%"
        )
    return "\n".join(lines) + "\n"


def figure(results, *, runs, figsize=(9, 8), dpi=110):
    """Average reward and % optimal action per step, one line per agent (a matplotlib Figure)."""
    from .plot import _figure

    fig = _figure(figsize, dpi)
    top, bottom = fig.subplots(2, 1, sharex=True)
    from matplotlib import colormaps

    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(results) - 1))
    for (label, (reward, optimal)), color in zip(
        results.items(), list(colors) + ["tab:red"], strict=True
    ):
        style = "--" if label.startswith("ε") else "-"
        steps = np.arange(1, len(reward) + 1)
        top.plot(steps, reward, style, color=color, lw=1, label=label)
        bottom.plot(steps, 100 * optimal, style, color=color, lw=1, label=label)
    top.set_ylabel("Average reward")
    bottom.set_ylabel("% Optimal action")
    bottom.set_xlabel("Steps")
    top.set_title(f"10-armed testbed, {runs} runs: softmax action selection vs ε-greedy")
    top.legend(loc="lower right", bbox_to_anchor=(1.0, 0.365), fontsize=8, ncol=4)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    return fig
