"""How many threads the compiled kernels may use.

The default is the number of CPUs this process may run on (its affinity mask), or
the environment variable ``SOFTMAXKIT_NUM_THREADS`` when it is set. Small inputs are
always processed by the calling thread alone.
"""

from __future__ import annotations

import contextlib
import operator
import os

__all__ = ["get_num_threads", "set_num_threads", "num_threads"]


def _default() -> int:
    value = os.environ.get("SOFTMAXKIT_NUM_THREADS", "").strip()
    if value:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number >= 1:
            return number
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # platforms without affinity masks
        return max(1, os.cpu_count() or 1)


_setting = [_default()]


def get_num_threads() -> int:
    """The number of threads the compiled kernels may use.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> smk.get_num_threads() >= 1
    True
    """
    return _setting[0]


def set_num_threads(n: int) -> None:
    """Set the number of threads the compiled kernels may use (``n >= 1``).

    Examples
    --------
    >>> import softmaxkit as smk
    >>> previous = smk.get_num_threads()
    >>> smk.set_num_threads(1)
    >>> smk.get_num_threads()
    1
    >>> smk.set_num_threads(previous)
    """
    try:
        number = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int, got {n!r}") from None
    if number < 1:
        raise ValueError(f"n must be >= 1, got {number}")
    _setting[0] = number


@contextlib.contextmanager
def num_threads(n: int):
    """Context manager: use ``n`` threads inside the ``with`` block.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> with smk.num_threads(1):
    ...     smk.get_num_threads()
    1
    """
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        _setting[0] = previous
