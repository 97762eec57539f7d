"""softmax of ``.npy`` files and Zarr arrays larger than memory: :func:`softmax_file`.

The source is read in blocks that fit the memory budget (memory-mapped ``.npy``
pages released after each block); a row too long for the budget is cut and read
twice, first into a :class:`~softmaxkit.streaming.LogSumExpState`, then
normalized. The result is written whole or not at all (a temporary file or folder
renamed onto the destination at the end).
"""

from __future__ import annotations

import errno
import mmap
import os
import secrets
import shutil
import stat
import tempfile
from typing import Literal

import numpy as np

from .. import _files
from .._lib._call import describe
from .._lib._typing import Int, Real
from .._lib._validation import (
    check_choice,
    check_int,
    check_positive_int,
    check_scalar_temperature,
    single_axis,
)
from ._progress import _advance, _close, _progress_bar
from ._state import LogSumExpState

__all__ = ["softmax_file"]


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
    check_choice("kind", kind, ("softmax", "log_softmax"))
    chunk_bytes = check_positive_int("chunk_bytes", chunk_bytes)
    check_scalar_temperature(temperature)
    axis = check_int("axis", axis)
    dst_text = os.fspath(dst)
    dst_is_zarr = dst_text.rstrip("/").endswith(".zarr")
    # Before any work: a destination that cannot be replaced is known now.
    _files.destination(dst_text, force=force, folder=dst_is_zarr)
    source, mapped = _open_source(src)
    shape = tuple(int(n) for n in source.shape)
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("src must hold an array of at least one dimension, got a 0-d array")
    axis = single_axis(axis, ndim)
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
                        from .._softmax import log_softmax, softmax

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
