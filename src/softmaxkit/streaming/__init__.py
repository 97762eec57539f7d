"""Softmax over data that does not fit in memory: a mergeable state and a file streamer.

:class:`LogSumExpState` summarises rows seen chunk by chunk with two numbers per row,
``(max, sum - 1)``; states of different chunks merge in any order (the idea behind
online softmax, Milakov & Gimelshein 2018, and FlashAttention). :func:`softmax_file`
uses it to normalize ``.npy`` and Zarr arrays larger than memory.

Modules: ``_state.py`` (the state), ``_file_softmax.py`` (the file streamer: its
readers, its block loop and its Zarr writer), ``_progress.py`` (its progress bar).
"""

from __future__ import annotations

from ._file_softmax import softmax_file
from ._state import LogSumExpState

__all__ = ["LogSumExpState", "softmax_file"]
