"""How many threads the compiled kernels may use.

The default is the number of CPUs this process may run on (its affinity mask), at
most :data:`MAX_THREADS`, or the environment variable ``SOFTMAXKIT_NUM_THREADS`` when
it is set (to an integer from 1 to :data:`MAX_THREADS`; any other value raises
``ValueError`` when softmaxkit is imported). Small inputs are always processed by the
calling thread alone. On PyTorch tensors the kernels use ``torch.get_num_threads()``
threads instead, unless the setting was chosen (the environment variable, or
:func:`set_num_threads`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ._lib._validation import check_int

__all__ = ["get_num_threads", "set_num_threads", "num_threads"]

#: The most threads the kernels use for one call (the calling one included); the
#: setting may not exceed it.
MAX_THREADS = 256

ENVIRONMENT_VARIABLE = "SOFTMAXKIT_NUM_THREADS"


def _default() -> int:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_THREADS:
            raise ValueError(
                f"{ENVIRONMENT_VARIABLE} must be an integer from 1 to {MAX_THREADS}, "
                f"got {value!r}"
            )
        return number
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # platforms without affinity masks
        cpus = os.cpu_count() or 1
    return min(max(1, cpus), MAX_THREADS)


_setting = [_default()]
#: Whether the setting was chosen by the user (the environment variable or
#: :func:`set_num_threads`): on PyTorch tensors the kernels otherwise follow
#: ``torch.get_num_threads()``, so that the two libraries share the cores.
_explicit = [bool(os.environ.get(ENVIRONMENT_VARIABLE, "").strip())]


def get_num_threads() -> int:
    """The number of threads the compiled kernels may use (from 1 to ``MAX_THREADS``).

    Examples
    --------
    >>> import softmaxkit as smk
    >>> 1 <= smk.get_num_threads() <= 256
    True
    """
    return _setting[0]


def set_num_threads(n: int) -> None:
    """Set the number of threads the compiled kernels may use.

    Parameters
    ----------
    n : int
        From 1 to ``softmaxkit._threads.MAX_THREADS`` (256), the most threads the
        kernels use for one call.

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is below 1 or above 256.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> previous = smk.get_num_threads()
    >>> smk.set_num_threads(1)
    >>> smk.get_num_threads()
    1
    >>> smk.set_num_threads(previous)
    """
    number = check_int("n", n, low=1, high=MAX_THREADS)
    _setting[0] = number
    _explicit[0] = True


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager: use ``n`` threads (from 1 to 256) inside the ``with`` block.

    Examples
    --------
    >>> import softmaxkit as smk
    >>> with smk.num_threads(1):
    ...     smk.get_num_threads()
    1
    """
    previous, explicit = get_num_threads(), _explicit[0]
    set_num_threads(n)
    try:
        yield
    finally:
        _setting[0], _explicit[0] = previous, explicit
