"""The scalar checks of the validation layer (``_validation.py`` re-exports them).

Each raises an error that names the argument and the value it got: a TypeError for
a value of the wrong kind, a ValueError for one out of its range.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

__all__ = [
    "REDUCTIONS",
    "check_real",
    "check_int",
    "check_positive_int",
    "check_flag",
    "check_fraction",
    "check_choice",
    "check_instance",
    "check_reduction",
    "check_scalar_temperature",
]


REDUCTIONS = ("mean", "sum", "none")


def _real(name, value, what="a real number") -> float:
    """``value`` as a float; a Python int beyond the float range is +-inf (its limit)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int such as 10**400
        return math.copysign(math.inf, value)


def check_real(
    name, value, *, low=None, high=None, low_open=False, high_open=False, finite=False
) -> float:
    """``value`` as a float within the bounds (``low_open``: ``> low``, else ``>= low``).

    NaN is refused: with a bound it is outside it, without one it is named.
    """
    value = _real(name, value)
    if math.isnan(value) and low is None and high is None:
        raise ValueError(f"{name} must not be NaN")
    if low is not None and not (value > low or (not low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and not (value < high or (not high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    if finite and math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _int(name, value) -> int:
    """``value`` as an int: a bool or a float is refused with a TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None


def check_int(name, value, *, low=None, high=None) -> int:
    """``value`` as an int (a bool or a float is refused) within ``[low, high]``."""
    number = _int(name, value)
    if low is not None and high is not None and not low <= number <= high:
        raise ValueError(f"{name} must be >= {low} and <= {high}, got {number}")
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {number}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {number}")
    return number


def check_positive_int(name, value) -> int:
    """A size or a count of at least one, as an int.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : int
        The value to check (a bool or a float is refused).

    Returns
    -------
    int
        ``value``.

    Raises
    ------
    TypeError
        ``{name} must be an int, got {value!r}``.
    ValueError
        ``{name} must be > 0, got {value}``.
    """
    number = _int(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {number}")
    return number


def check_flag(name, value) -> bool:
    """A switch: ``True`` or ``False`` (a NumPy bool too), as a Python bool.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : bool
        The value to check; ``0``, ``1`` or a string are refused.

    Returns
    -------
    bool
        ``value``.

    Raises
    ------
    TypeError
        ``{name} must be True or False, got {value!r}``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_fraction(name, value, *, allow_zero) -> float:
    """A fraction in ``[0, 1]`` (``allow_zero``) or ``(0, 1]``."""
    value = _real(name, value, "a number")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices`` (strings), else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def check_instance(name, value, types, what):
    """``value`` if it is an instance of ``types``, else a TypeError.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value to check.
    types : type or tuple of types
        The accepted types.
    what : str
        What the argument must be, in words (``"a LogSumExpState"``).

    Returns
    -------
    object
        ``value``.

    Raises
    ------
    TypeError
        ``{name} must be {what}, got {value!r}``.
    """
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    return value


def check_reduction(reduction) -> str:
    """A loss reduction: 'mean', 'sum' or 'none' (as in PyTorch)."""
    return check_choice("reduction", reduction, REDUCTIONS)


def check_scalar_temperature(temperature, name="temperature") -> float:
    """A scalar temperature as a float: >= 0 and not NaN (``inf`` is allowed; so is an
    int beyond the float range, which is its limit, ``inf``). A value that is not a
    real number (a bool, a string, an array) is a TypeError."""
    value = _real(name, temperature)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value
