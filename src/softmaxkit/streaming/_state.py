"""The mergeable state of rows seen chunk by chunk: :class:`LogSumExpState`.

The state summarises each row with two numbers, ``(max, sum - 1)``; states of
different chunks merge in any order (the idea behind online softmax, Milakov &
Gimelshein 2018, and FlashAttention). The file streamer (``_file_softmax.py``)
normalizes arrays on disk with it.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._lib._call import describe
from .._lib._dtypes import _name
from .._lib._namespace import is_numpy_namespace
from .._lib._online import chunk_state, merge_states, normalize_chunk, state_logsumexp
from .._lib._typing import Array, ArrayLike, Int, Temperature
from .._lib._validation import check_instance, check_scalar_temperature

__all__ = ["LogSumExpState"]


class LogSumExpState:
    r"""A mergeable summary of rows seen in chunks: their maximum and ``sum(exp) - 1``.

    Feed the chunks of the rows with :meth:`update` (in any order, in any number of
    states that are then combined with :meth:`merge`); once the state has seen the
    whole of each row, :meth:`logsumexp` gives the log-sum-exp and
    :meth:`normalize` / :meth:`log_normalize` turn any chunk into its softmax /
    log_softmax.

    Parameters
    ----------
    temperature : float or array, default 1.0
        As in :func:`softmaxkit.softmax`: the rows are divided by it.

    Attributes
    ----------
    max : array or None
        The raw maximum of each row seen so far (keepdims shape), ``-inf`` for
        rows with no entry yet; None before the first update.
    sum_minus_one : array or None
        ``sum(exp((x - max) / T)) - 1`` per row; held minus one so that the
        ``log1p`` form keeps full accuracy when the sum is close to 1.

    Notes
    -----
    The state of a chunk is computed with the core's compensated shifted
    exponentials (float32 accumulated in float64); merging rescales by
    ``exp((m_i - m) / T)`` with the same compensation, so any chunking and any
    merge order give the same result within a few ulp. Edge rows behave as in
    the core: ``+inf`` entries share the mass, a NaN makes its row NaN, empty
    and all ``-inf`` chunks are the identity of the merge.

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> x = np.array([[1.0, 3.0, 2.0, 0.5]])
    >>> state = smk.LogSumExpState()
    >>> _ = state.update(x[:, :2]).update(x[:, 2:])
    >>> state.logsumexp()
    array([3.46077349])
    >>> np.concatenate([state.normalize(x[:, :2]), state.normalize(x[:, 2:])], axis=-1)
    array([[0.08536889, 0.63079554, 0.23205671, 0.05177885]])
    >>> a = smk.LogSumExpState().update(x[:, :1])
    >>> b = smk.LogSumExpState().update(x[:, 1:])
    >>> a.merge(b).logsumexp()
    array([3.46077349])
    """

    def __init__(self, *, temperature: Temperature = 1.0) -> None:
        if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
            check_scalar_temperature(temperature)
        self.temperature = temperature
        self.max = None
        self.sum_minus_one = None
        self._axis = None
        self._axes = None
        self._xp = None
        self._plan = None
        self._validated_temperature = None

    def _describe(self, chunk, axis, where):
        args = describe(chunk, axis, temperature=self.temperature, where=where)
        if self.max is not None:
            if args.xp is not self._xp and type(args.x) is not type(self.max):
                raise TypeError("chunk must be an array of the same library as the earlier chunks")
            if args.axes != self._axes or len(args.x.shape) != len(self.max.shape):
                raise ValueError(
                    f"axis {axis!r} of a chunk of shape {tuple(args.x.shape)} does not match "
                    f"the state's rows (axes {self._axes}, state shape {tuple(self.max.shape)})"
                )
            row_shape = tuple(1 if i in args.axes else n for i, n in enumerate(args.x.shape))
            if row_shape != tuple(self.max.shape):
                raise ValueError(
                    f"chunk of shape {tuple(args.x.shape)} does not have the rows of the "
                    f"state (state shape {tuple(self.max.shape)}, axes {self._axes})"
                )
        return args

    def update(
        self,
        chunk: ArrayLike,
        axis: Int | tuple[Int, ...] = -1,
        *,
        where: ArrayLike | None = None,
    ) -> LogSumExpState:
        """Take in a chunk of the rows; returns the state itself.

        Parameters
        ----------
        chunk : array_like
            Part of every row: the same shape as the rows except along ``axis``.
        axis : int or tuple of int, default -1
            The axis (or axes) the rows run along; the same for every chunk.
        where : array of bool, optional
            Keep-mask for this chunk; False entries take no part.
        """
        args = self._describe(chunk, axis, where)
        maximum, sum_minus_one = chunk_state(
            args.xp,
            args.x,
            args.axes,
            temperature=args.temperature,
            keep=args.keep,
            widened=_widened(args.plan),
        )
        if self.max is None:
            self.max, self.sum_minus_one = maximum, sum_minus_one
            self._axis, self._axes, self._xp, self._plan = axis, args.axes, args.xp, args.plan
            self._validated_temperature = args.temperature
        else:
            self.max, self.sum_minus_one = self._merged(maximum, sum_minus_one)
        return self

    def _merged(self, maximum, sum_minus_one):
        xp = self._xp
        axis = self._axes[0] if self._axes else 0
        if not self._axes:  # 0-d rows: add a length-1 axis to merge along
            both_max = xp.stack([self.max, maximum])
            both_sum = xp.stack([self.sum_minus_one, sum_minus_one])
            merged = merge_states(
                xp, both_max, both_sum, (0,), temperature=self._validated_temperature
            )
            return merged[0][0], merged[1][0]
        both_max = xp.concat([self.max, maximum], axis=axis)
        both_sum = xp.concat([self.sum_minus_one, sum_minus_one], axis=axis)
        return merge_states(
            xp, both_max, both_sum, self._axes, temperature=self._validated_temperature
        )

    def merge(self, other: LogSumExpState) -> LogSumExpState:
        """A new state summarising the chunks of ``self`` and of ``other`` together."""
        check_instance("other", other, LogSumExpState, "a LogSumExpState")
        if not _same_temperature(self.temperature, other.temperature):
            raise ValueError("states with different temperatures cannot be merged")
        merged = LogSumExpState(temperature=self.temperature)
        source = self if self.max is not None else other
        for name in ("max", "sum_minus_one", "_axis", "_axes", "_xp", "_plan"):
            setattr(merged, name, getattr(source, name))
        merged._validated_temperature = source._validated_temperature
        if self.max is None or other.max is None:
            return merged
        if other._axes != self._axes or tuple(other.max.shape) != tuple(self.max.shape):
            raise ValueError(
                f"states of different rows cannot be merged: shapes {tuple(self.max.shape)} "
                f"and {tuple(other.max.shape)}"
            )
        merged.max, merged.sum_minus_one = self._merged(other.max, other.sum_minus_one)
        return merged

    def _require_data(self):
        if self.max is None:
            raise ValueError("the state has seen no chunk yet: call update() first")

    def _finish(self, result):
        result = self._xp.astype(result, self._plan.result)
        return np.asarray(result) if is_numpy_namespace(self._xp) else result

    def logsumexp(self, *, keepdims: bool = False) -> Array:
        """``logsumexp(x / T)`` of each row seen (``-inf`` for rows with no entry)."""
        self._require_data()
        xp = self._xp
        result = state_logsumexp(
            xp, self.max, self.sum_minus_one, temperature=self._validated_temperature
        )
        if not keepdims and self._axes:
            result = xp.squeeze(result, axis=self._axes)
        return self._finish(result)

    def normalize(self, chunk: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """softmax of a chunk of the rows, once the state has seen the whole rows."""
        return self._normalize(chunk, where, log=False)

    def log_normalize(self, chunk: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """log_softmax of a chunk of the rows, once the state has seen the whole rows."""
        return self._normalize(chunk, where, log=True)

    def _normalize(self, chunk, where, log):
        self._require_data()
        args = self._describe(chunk, self._axis, where)
        if args.is_empty:
            return args.finish(args.x)
        result = normalize_chunk(
            args.xp,
            args.x,
            args.axes,
            self.max,
            self.sum_minus_one,
            temperature=self._validated_temperature,
            keep=args.keep,
            log=log,
            widened=_widened(args.plan),
        )
        return args.finish(result)

    def __repr__(self):
        if self.max is None:
            return f"LogSumExpState(temperature={self.temperature!r}, empty)"
        return f"LogSumExpState(temperature={self.temperature!r}, rows={tuple(self.max.shape)})"


def _widened(plan):
    """Whether the work dtype is wider than the result's (see ``_lib/_online.py``)."""
    return _name(plan.work) != _name(plan.result) and _name(plan.result) != "float64"


def _same_temperature(a, b):
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return float(a) == float(b)
    return a is b
