"""Softmax over data that does not fit in memory: a mergeable state and a file streamer.

:class:`LogSumExpState` summarises rows seen chunk by chunk with two numbers per row,
``(max, sum - 1)``; states of different chunks merge in any order (the idea behind
online softmax, Milakov & Gimelshein 2018, and FlashAttention). :func:`softmax_file`
uses it to normalize ``.npy`` and Zarr arrays larger than memory. (Some 650 lines, two
concepts: the file streamer, its readers and its Zarr writer belong in a module of their
own beside the state; that split is still to do.)
"""

from __future__ import annotations

import errno
import mmap
import numbers
import os
import secrets
import shutil
import stat
import tempfile
from typing import Literal

import numpy as np

from . import _files
from ._lib._call import describe
from ._lib._dtypes import _name
from ._lib._namespace import is_numpy_namespace
from ._lib._online import chunk_state, merge_states, normalize_chunk, state_logsumexp
from ._lib._typing import Array, ArrayLike, Int, Real, Temperature
from ._lib._validation import check_scalar_temperature

__all__ = ["LogSumExpState", "softmax_file"]


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
        if not isinstance(other, LogSumExpState):
            raise TypeError(f"other must be a LogSumExpState, got {type(other).__name__}")
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


# --------------------------------------------------------------------------------------
# Files


def _is_zarr_path(path) -> bool:
    text = os.fspath(path).rstrip("/")
    return text.endswith(".zarr") or (os.path.isdir(text) and not text.endswith(".npy"))


class _Mapped:
    """A memory-mapped ``.npy`` whose resident pages are released after each chunk.

    File-backed pages of a mapping count in the process's resident set while it is
    mapped; dropping them (``MADV_DONTNEED``, after a flush for written pages) keeps
    the resident set within the memory budget however large the file is.
    """

    def __init__(self, array):
        self.array = array

    def release(self):
        mapping = getattr(self.array, "_mmap", None)
        if mapping is None:
            return
        if self.array.flags.writeable:
            mapping.flush()
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is not None and hasattr(mapping, "madvise"):
            mapping.madvise(advice)


def _open_source(src):
    """The array of ``src`` (a ``.npy`` file memory-mapped, or a Zarr array), checked."""
    text = os.fspath(src)
    if not os.path.exists(text):
        raise FileNotFoundError(errno.ENOENT, "no such file or folder", text)
    if _is_zarr_path(text):
        try:
            import zarr
        except ImportError:
            raise ImportError(
                f"src {text!r} is a Zarr array: softmax_file needs zarr (pip install zarr)"
            ) from None
        try:
            return zarr.open_array(text, mode="r"), None
        except Exception as error:
            raise ValueError(
                f"src {text!r} is not a readable Zarr array: {type(error).__name__}: {error}"
            ) from None
    if os.path.isdir(text):
        raise IsADirectoryError(f"src {text!r} is a folder, not a .npy file or a Zarr array")
    _files.npy_header(text, label="src")
    array = np.load(text, mmap_mode="r", allow_pickle=False)
    return array, _Mapped(array)


class _RowView:
    """An on-disk array seen as rows ``(..., rows, axis)``, read and written in blocks.

    A ``.npy`` memmap is viewed with the softmax axis moved last (a view, no copy),
    flattened to 2-D when that view is contiguous; a Zarr array is indexed in its
    own axis order and each block transposed in memory.
    """

    def __init__(self, array, axis):
        self.array = array
        self.axis = axis
        shape = tuple(int(n) for n in array.shape)
        self.ndim = len(shape)
        self.length = shape[axis]
        self.numpy = isinstance(array, np.ndarray)
        if self.numpy:
            view = np.moveaxis(array, axis, -1)
            if view.flags.c_contiguous and view.size:
                view = view.reshape(-1, self.length)
            if view.ndim == 1:
                view = view[np.newaxis]
            self.view = view
            self.rows_shape = tuple(view.shape[:-1])
        else:
            rows = shape[:axis] + shape[axis + 1 :]
            self.rows_shape = rows if rows else (1,)

    def _index(self, lead, r0, r1, a0, a1):
        if self.ndim == 1:
            return (slice(a0, a1),)
        index = list(lead) + [slice(r0, r1)]
        index.insert(self.axis, slice(a0, a1))
        return tuple(index)

    def read(self, lead, r0, r1, a0, a1):
        if self.numpy:
            return np.array(self.view[tuple(lead) + (slice(r0, r1), slice(a0, a1))])
        block = np.asarray(self.array[self._index(lead, r0, r1, a0, a1)])
        if self.ndim == 1:
            return block[np.newaxis]
        return block if self.axis == self.ndim - 1 else block.T

    def write(self, lead, r0, r1, a0, a1, values):
        if self.numpy:
            self.view[tuple(lead) + (slice(r0, r1), slice(a0, a1))] = values
            return
        if self.ndim == 1:
            values = values[0]
        elif self.axis != self.ndim - 1:
            values = values.T
        self.array[self._index(lead, r0, r1, a0, a1)] = values


def softmax_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    axis: Int = -1,
    kind: Literal["softmax", "log_softmax"] = "softmax",
    temperature: Real = 1.0,
    chunk_bytes: Int = 256 * 2**20,
    progress: bool = True,
    force: bool = False,
) -> str:
    """softmax (or log_softmax) of an array stored on disk, written to another file.

    Parameters
    ----------
    src : str or path
        A ``.npy`` file (read memory-mapped) or a Zarr array (a ``.zarr`` directory).
    dst : str or path
        Where to write the result: a ``.npy`` file, or a Zarr array when the name
        ends in ``.zarr``. It is written whole or not at all: the result goes to a
        temporary file in the same directory (its blocks reserved first, so that a
        full disk is an ``OSError`` naming ``dst``), synced, and renamed onto
        ``dst`` at the end, so that a failed or interrupted run leaves ``dst`` as it
        was and no temporary file. A symbolic link is written through (its target
        is replaced); an existing file keeps its permission bits; a new one gets
        ``0666 & ~umask``.
    axis : int, default -1
        The axis to normalize over.
    kind : {"softmax", "log_softmax"}
        Which function to apply.
    temperature : float, default 1.0
        As in :func:`softmaxkit.softmax`.
    chunk_bytes : int, default 256 MiB
        Memory budget for the data held at once, the temporaries of the
        computation included. When one row along ``axis`` does not fit, the axis is
        cut and the file is read twice (first the state of each row, then the
        normalization).
    progress : bool, default True
        Show a progress bar (``tqdm``, or ``rich``; none if neither is installed).
    force : bool, default False
        Replace ``dst`` even if it is read-only, or has other hard links (which keep
        the old contents: a rename cannot rewrite a file in place).

    Returns
    -------
    str
        ``dst``.

    Raises
    ------
    ValueError, TypeError
        For a bad argument, or a ``src`` that is not a ``.npy`` file (a ``.npz``,
        a file shorter than its header says) or a readable Zarr array, or holds no
        real numbers.
    OSError
        Before any work, for a ``dst`` that is a folder, a FIFO or a device, in a
        missing or read-only folder, or read-only or hard-linked without ``force``
        (``IsADirectoryError``, ``FileExistsError``, ``FileNotFoundError``,
        ``PermissionError``); while writing, for a full disk, naming ``dst``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> folder = tempfile.mkdtemp()
    >>> src, dst = os.path.join(folder, "x.npy"), os.path.join(folder, "p.npy")
    >>> np.save(src, np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0]]))
    >>> _ = smk.softmax_file(src, dst, chunk_bytes=2**20, progress=False)
    >>> np.load(dst)
    array([[0.09003057, 0.66524096, 0.24472847],
           [0.33333333, 0.33333333, 0.33333333]])
    >>> import shutil; shutil.rmtree(folder)
    """
    if kind not in ("softmax", "log_softmax"):
        raise ValueError(f"kind must be 'softmax' or 'log_softmax', got {kind!r}")
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, numbers.Integral):
        raise TypeError(f"chunk_bytes must be an integer, got {chunk_bytes!r}")
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be > 0, got {chunk_bytes!r}")
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    LogSumExpState(temperature=temperature)  # validates the value
    dst_text = os.fspath(dst)
    dst_is_zarr = dst_text.rstrip("/").endswith(".zarr")
    # Before any work: a destination that cannot be replaced is known now.
    _files.destination(dst_text, force=force, folder=dst_is_zarr)
    source, mapped = _open_source(src)
    shape = tuple(int(n) for n in source.shape)
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("src must hold an array of at least one dimension, got a 0-d array")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    axis = int(axis) % ndim
    in_dtype = np.dtype(source.dtype)
    if in_dtype.kind not in "biuf" and in_dtype.name != "bfloat16":
        raise TypeError(
            f"src {os.fspath(src)!r} holds {in_dtype} values; softmax needs real numbers"
        )
    plan = describe(np.empty((0,), dtype=in_dtype), -1).plan
    out_dtype, work_dtype = np.dtype(plan.result), np.dtype(plan.work)
    # The core's shifted exponentials keep about a dozen work-dtype temporaries of a block;
    # the margin covers the input and output pages and the allocator.
    bytes_per_element = 16 * work_dtype.itemsize + in_dtype.itemsize + out_dtype.itemsize
    budget = max(int(chunk_bytes) // bytes_per_element, 1)

    rows_in = _RowView(source, axis)
    length = rows_in.length
    last = rows_in.rows_shape[-1]
    if length <= budget:
        row_step, piece = max(min(budget // max(length, 1), last), 1), max(length, 1)
    else:
        row_step, piece = 1, budget
    blocks = _Blocks(rows_in, mapped, row_step, piece, kind, temperature)
    bar = _progress_bar(blocks.count, progress, f"{kind} {os.path.basename(os.fspath(src))}")
    try:
        if dst_is_zarr:
            chunks = [1] * ndim
            chunks[axis] = max(min(piece, length), 1)
            if ndim > 1:
                chunks[ndim - 1 if axis != ndim - 1 else ndim - 2] = max(min(row_step, last), 1)
            _write_zarr(dst_text, force, shape, out_dtype, tuple(chunks), blocks, bar)
        else:
            with _files.AtomicFile(dst_text, force=force, suffix=".npy") as output:
                target = np.lib.format.open_memmap(
                    output.temporary, mode="w+", dtype=out_dtype, shape=shape
                )
                output.preallocate(target.offset if isinstance(target, np.memmap) else 0)
                target_mapped = _Mapped(target)
                blocks.write(_RowView(target, axis), target_mapped, bar)
                target.flush()
                del target, target_mapped
                output.commit()
    finally:
        _close(bar)
    return dst_text


class _Blocks:
    """The blocks of ``rows_in``, normalized and written to another row view."""

    def __init__(self, rows_in, mapped, row_step, piece, kind, temperature):
        self.rows_in, self.mapped = rows_in, mapped
        self.row_step, self.piece = row_step, piece
        self.kind, self.temperature = kind, temperature
        self.length = rows_in.length
        self.last = rows_in.rows_shape[-1]
        self.leads = list(np.ndindex(*rows_in.rows_shape[:-1]))
        self.two_pass = piece < self.length
        per_row = -(-self.length // piece) if self.length else 1
        count = len(self.leads) * -(-self.last // row_step) * per_row
        self.count = count * (2 if self.two_pass else 1)

    def write(self, rows_out, target_mapped, bar):
        rows_in, length, piece = self.rows_in, self.length, self.piece
        temperature = self.temperature
        for lead in self.leads if length else []:
            for r0 in range(0, self.last, self.row_step):
                r1 = min(r0 + self.row_step, self.last)
                state = None
                if self.two_pass:
                    state = LogSumExpState(temperature=temperature)
                    for a0 in range(0, length, piece):
                        state.update(rows_in.read(lead, r0, r1, a0, min(a0 + piece, length)))
                        _release(self.mapped)
                        _advance(bar)
                for a0 in range(0, length, piece):
                    a1 = min(a0 + piece, length)
                    block = rows_in.read(lead, r0, r1, a0, a1)
                    if state is None:
                        from ._softmax import log_softmax, softmax

                        function = softmax if self.kind == "softmax" else log_softmax
                        values = function(block, temperature=temperature)
                    elif self.kind == "softmax":
                        values = state.normalize(block)
                    else:
                        values = state.log_normalize(block)
                    rows_out.write(lead, r0, r1, a0, a1, values)
                    del block, values
                    _release(self.mapped)
                    _release(target_mapped)
                    _advance(bar)


def _write_zarr(dst, force, shape, dtype, chunks, blocks, bar):
    """Write the blocks into a Zarr array in a temporary folder, then swap it in."""
    import zarr

    path = _files.destination(dst, force=force, folder=True)
    folder = os.path.dirname(path)
    previous = os.stat(path) if os.path.isdir(path) else None
    temporary = None
    try:
        # The mode of a new folder (0777 less the umask), unless it replaces one.
        temporary = _new_folder(folder)
        target = zarr.open_array(temporary, mode="w", shape=shape, dtype=dtype, chunks=chunks)
        blocks.write(_RowView(target, blocks.rows_in.axis), None, bar)
        del target
        _fsync_tree(temporary)
        if previous is not None:
            os.chmod(temporary, stat.S_IMODE(previous.st_mode))
        _replace_directory(temporary, path)
        temporary = None
        _files.fsync_folder(folder)
    except OSError as error:
        if getattr(error, "destination", None) == dst:
            raise
        raise _files.named(error, dst) from error
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _new_folder(parent):
    for _ in range(100):
        candidate = os.path.join(parent, f".tmp-{secrets.token_hex(4)}.zarr")
        try:
            os.mkdir(candidate, 0o777)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "no free temporary name", parent)


def _fsync_tree(root):
    for folder, _, files in os.walk(root):
        for name in files:
            descriptor = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _files.fsync_folder(folder)


def _replace_directory(new, dst):
    if os.path.isdir(dst):
        old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(os.path.abspath(dst)))
        os.rmdir(old)
        os.replace(dst, old)
        os.replace(new, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dst)


def _release(mapped):
    if mapped is not None:
        mapped.release()


def _progress_bar(total, enabled, description):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=description, unit="chunk")
    except ImportError:
        pass
    try:
        from rich.console import Console
        from rich.progress import Progress

        # On standard error, as tqdm's: standard output may be the data.
        bar = Progress(console=Console(stderr=True))
        bar.start()
        task = bar.add_task(description, total=total)
        return (bar, task)
    except ImportError:
        return None


def _advance(bar):
    if bar is None:
        return
    if isinstance(bar, tuple):
        bar[0].advance(bar[1])
    else:
        bar.update(1)


def _close(bar):
    if bar is None:
        return
    if isinstance(bar, tuple):
        bar[0].stop()
    else:
        bar.close()
