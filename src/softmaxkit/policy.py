"""Softmax (Boltzmann) action selection for reinforcement learning, with temperature schedules.

The policy picks action ``a`` with probability ``exp(Q(a) / T) / sum_b exp(Q(b) / T)``
(Sutton & Barto, *Reinforcement Learning*, 2nd ed., section 2.8 and 13.1). A
schedule lowers the temperature as learning proceeds, from exploring (large ``T``)
towards exploiting (small ``T``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

from ._lib._namespace import array_namespace
from ._lib._typing import Array, ArrayLike, Axis, Int, Real, Seed, Temperature
from ._lib._validation import (
    check_fraction,
    check_instance,
    check_int,
    check_real,
    check_scalar_temperature,
)
from ._softmax import softmax
from .sampling import sample

__all__ = ["SoftmaxPolicy", "Schedule", "constant", "linear", "exponential"]


def _maximum(value, floor):
    if isinstance(value, numbers.Real):
        return max(float(value), floor)
    xp = array_namespace(value)
    return xp.maximum(value, xp.asarray(floor, dtype=value.dtype))


class Schedule:
    """A temperature as a function of the step, starting from the policy's temperature.

    Build one with :func:`constant`, :func:`linear` or :func:`exponential`.
    ``schedule(start, step)`` gives the temperature at ``step`` (0, 1, 2, ...)
    for a start temperature ``start`` (a number, or an array of per-row values).
    """

    def __init__(
        self,
        kind: str,
        function: Callable[[Temperature, int], Temperature],
        description: str,
    ) -> None:
        self.kind = kind
        self._function = function
        self._description = description

    def __call__(self, start: Temperature, step: Int) -> Temperature:
        return self._function(start, check_int("step", step, low=0))

    def __repr__(self):
        return self._description


def constant() -> Schedule:
    """The temperature stays at its start value.

    Examples
    --------
    >>> from softmaxkit.policy import constant
    >>> constant()(2.0, 1000)
    2.0
    """
    return Schedule("constant", lambda start, step: start, "constant()")


def linear(end: Real, steps: Int) -> Schedule:
    """From the start temperature down (or up) to ``end`` in ``steps`` steps, then ``end``.

    Examples
    --------
    >>> from softmaxkit.policy import linear
    >>> schedule = linear(end=0.1, steps=10)
    >>> schedule(1.0, 0), schedule(1.0, 5), schedule(1.0, 10), schedule(1.0, 99)
    (1.0, 0.55, 0.1, 0.1)
    """
    end = check_real("end", end, low=0)
    steps = check_int("steps", steps, low=1)

    def temperature(start, step):
        fraction = min(step, steps) / steps
        return start + (end - start) * fraction

    return Schedule("linear", temperature, f"linear(end={end!r}, steps={steps!r})")


def exponential(decay: Real, floor: Real = 0.0) -> Schedule:
    """``max(floor, start * decay**step)``: geometric decay that stops at ``floor``.

    Examples
    --------
    >>> from softmaxkit.policy import exponential
    >>> schedule = exponential(decay=0.5, floor=0.2)
    >>> [schedule(1.0, step) for step in range(4)]
    [1.0, 0.5, 0.25, 0.2]
    """
    decay = check_fraction("decay", decay, allow_zero=False)
    floor = check_real("floor", floor, low=0)

    def temperature(start, step):
        return _maximum(start * decay**step, floor)

    return Schedule("exponential", temperature, f"exponential(decay={decay!r}, floor={floor!r})")


class SoftmaxPolicy:
    """Boltzmann action selection over Q-values, with an optional temperature schedule.

    Parameters
    ----------
    temperature : float or array, default 1.0
        The start temperature, >= 0; an array of shape ``(n, 1)`` gives one
        temperature per row of an ``(n, actions)`` batch. ``0`` is greedy.
    schedule : Schedule, optional
        How the temperature changes with each call of :meth:`select`:
        :func:`constant` (the default), :func:`linear` or :func:`exponential`.

    Attributes
    ----------
    step : int
        The number of :meth:`select` calls so far; the schedule is evaluated at it.

    Notes
    -----
    At temperature 0, :meth:`probabilities` splits the mass equally among tied
    maxima (the limit of softmax) while :meth:`select` picks the lowest index
    among them, as :func:`softmaxkit.sample` does.

    Examples
    --------
    >>> import numpy as np
    >>> from softmaxkit import SoftmaxPolicy
    >>> from softmaxkit.policy import exponential
    >>> policy = SoftmaxPolicy(temperature=1.0, schedule=exponential(decay=0.5, floor=0.1))
    >>> q = np.array([1.0, 2.0, 0.5])
    >>> policy.probabilities(q)
    array([0.2312239 , 0.62853172, 0.14024438])
    >>> rng = np.random.default_rng(0)
    >>> [int(policy.select(q, rng=rng)) for _ in range(3)], policy.temperature
    ([1, 1, 1], 0.125)
    """

    def __init__(self, temperature: Temperature = 1.0, schedule: Schedule | None = None) -> None:
        if isinstance(temperature, numbers.Real):
            temperature = check_scalar_temperature(temperature)
        if schedule is None:
            schedule = constant()
        check_instance(
            "schedule",
            schedule,
            Schedule,
            "made by softmaxkit.policy.constant, linear or exponential",
        )
        self.start = temperature
        self.schedule = schedule
        self.step = 0

    def __repr__(self):
        return f"SoftmaxPolicy(temperature={self.start!r}, schedule={self.schedule!r})"

    @property
    def temperature(self) -> Temperature:
        """The temperature at the current step."""
        return self.schedule(self.start, self.step)

    def probabilities(
        self, q: ArrayLike, /, axis: Axis = -1, *, where: ArrayLike | None = None
    ) -> Array:
        """The probability of each action: the softmax of ``q / T`` along ``axis``."""
        return softmax(q, axis, temperature=self.temperature, where=where)

    def select(
        self,
        q: ArrayLike,
        /,
        *,
        axis: Int = -1,
        rng: Seed = None,
        where: ArrayLike | None = None,
    ) -> Array:
        """Draw one action per row of ``q`` and advance the schedule by one step.

        ``rng`` is as in :func:`softmaxkit.sample`; ``where`` masks out actions
        that are not available.
        """
        action = sample(q, axis=axis, temperature=self.temperature, where=where, rng=rng)
        self.step += 1
        return action

    def reset(self) -> None:
        """Start the schedule again from step 0."""
        self.step = 0
