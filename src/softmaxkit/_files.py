"""Files written whole or not at all, and ``.npy`` headers checked before any read.

:class:`AtomicFile` writes a temporary file next to the destination and renames it
onto the destination once written and synced, so that a full disk, an error or a
signal leaves the destination as it was and no temporary behind. The rules of
replacing an existing destination (shared by :func:`softmaxkit.softmax_file` and
the ``softmax`` command):

- a symbolic link is written through: its target is replaced, the link stays;
- an existing file keeps its permission bits (and, where the system allows it,
  its owner and group); a new file gets ``0666 & ~umask``;
- a read-only file (no write permission for the caller, or no write bit at all)
  and a file with other hard links (which a rename would leave holding the old
  contents) are refused unless ``force``;
- a folder, a FIFO, a device or a missing folder is refused before any work;
- the data are flushed and ``fsync``-ed before the rename, and the folder after it
  (what makes the rename itself durable).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import stat

import numpy as np

# Zero-filling, where a file system cannot preallocate, goes in blocks of this size.
_FILL_BYTES = 16 * 2**20
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _subject(label: str | None, name: str) -> str:
    return f"{label} {name!r}" if label else repr(name)


def named(error: OSError, name: str) -> OSError:
    """``error`` about the destination ``name`` (not the temporary file) and its cause."""
    if error.errno is None:
        renamed = OSError(f"cannot write {name!r}: {error}")
    else:
        renamed = OSError(error.errno, error.strerror or os.strerror(error.errno), name)
    renamed.__cause__ = error
    renamed.destination = name
    return renamed


def destination(
    name,
    *,
    force: bool = False,
    folder: bool = False,
    label: str | None = "dst",
    force_option: str = "force=True",
) -> str:
    """The path that writing ``name`` replaces, after checking that it may be replaced.

    A symbolic link resolves to its target. Raises (before any work is done)
    ``FileNotFoundError`` for a missing folder, ``IsADirectoryError`` for a folder,
    ``FileExistsError`` for a FIFO, a device, a file with other hard links (or, for
    ``folder=True``, a file where a folder is to go), and ``PermissionError`` for a
    folder that cannot be written to or a read-only destination; ``force`` lets
    read-only and hard-linked destinations be replaced.
    """
    name = os.fspath(name)
    subject = _subject(label, name)
    path = os.path.realpath(name)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise FileNotFoundError(
            errno.ENOENT, f"no such folder: {os.path.dirname(name) or '.'!r}", name
        )
    try:
        status = os.stat(path)
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise named(error, name) from None
    if status is not None:
        if folder and not stat.S_ISDIR(status.st_mode):
            raise FileExistsError(f"{subject} exists and is not a folder")
        if not folder and stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(f"{subject} is a folder, not a file")
        if not folder and not stat.S_ISREG(status.st_mode):
            raise FileExistsError(f"{subject} is a {file_kind(status.st_mode)}, not a regular file")
    if not os.access(parent, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        raise PermissionError(
            code,
            f"{os.strerror(code)}: cannot create a file in the folder of {subject}",
            name,
        )
    if status is None or force:
        return path
    if not status.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise PermissionError(
            errno.EACCES,
            f"{subject} is read-only (mode {stat.S_IMODE(status.st_mode):04o}); "
            f"{force_option} replaces it",
            name,
        )
    if not folder and status.st_nlink > 1:
        others = status.st_nlink - 1
        raise FileExistsError(
            f"{subject} has {others} other hard link{'s' if others > 1 else ''}, which "
            f"replacing it would leave with the old contents; {force_option} replaces it"
        )
    return path


def fsync_folder(path: str) -> None:
    """Make the entries of the folder ``path`` (a rename into it) durable."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    except OSError as error:
        # Some file systems cannot sync a folder; the data themselves are synced.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


def keep_attributes(descriptor: int, previous: os.stat_result | None) -> None:
    """Give the new file the replaced file's permission bits, owner and group."""
    if previous is None:
        return
    if hasattr(os, "fchown"):
        with contextlib.suppress(PermissionError):
            os.fchown(descriptor, previous.st_uid, previous.st_gid)
    # No set-user/group-ID bit moves to a file with other contents.
    os.fchmod(descriptor, stat.S_IMODE(previous.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))


class AtomicFile:
    """A temporary file next to ``dst``, renamed onto it by :meth:`commit`.

    ``dst`` is checked by :func:`destination` on creation. Leaving the ``with`` block
    without :meth:`commit` (an exception, a signal turned into one) removes the
    temporary file; an ``OSError`` raised inside names ``dst``, not the temporary.
    """

    def __init__(
        self,
        dst,
        *,
        force: bool = False,
        prefix: str = ".tmp-",
        suffix: str = "",
        label: str | None = "dst",
        force_option: str = "force=True",
    ):
        self.name = os.fspath(dst)
        self.path = destination(self.name, force=force, label=label, force_option=force_option)
        try:
            self.previous = os.stat(self.path)
        except FileNotFoundError:
            self.previous = None
        self.folder = os.path.dirname(self.path)
        self.temporary = None
        self.descriptor = None
        # O_EXCL on a fresh random name, with the mode of a new file: 0666 less the umask.
        for _ in range(100):
            candidate = os.path.join(self.folder, prefix + secrets.token_hex(4) + suffix)
            try:
                self.descriptor = os.open(
                    candidate,
                    os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                    0o666,
                )
            except FileExistsError:
                continue
            except OSError as error:
                raise named(error, self.name) from None
            self.temporary = candidate
            break
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise FileExistsError(errno.EEXIST, "no free temporary name", self.name)
        self.committed = False

    def open(self):
        """A binary file object on the temporary file (closing it keeps the file)."""
        return os.fdopen(self.descriptor, "wb", closefd=False)

    def preallocate(self, start: int) -> None:
        """Reserve the blocks of the file's zeros from ``start`` on, so that a full disk
        is an error here.

        Writing through a memory map into a sparse file on a file system that
        fills up ends the process with SIGBUS; reserved blocks need no allocation
        when the pages are written.
        """
        size = os.fstat(self.descriptor).st_size
        if size <= start:
            return
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.descriptor, start, size - start)
                return
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise named(error, self.name) from None
        # No preallocation here: the zeros written through ordinary I/O take the blocks.
        zeros = bytes(min(_FILL_BYTES, size - start))
        try:
            for offset in range(start, size, len(zeros)):
                os.pwrite(self.descriptor, zeros[: min(len(zeros), size - offset)], offset)
        except OSError as error:
            raise named(error, self.name) from None

    def commit(self) -> str:
        """Sync the temporary file, give it the old file's mode, rename it onto ``dst``."""
        try:
            os.fsync(self.descriptor)
            keep_attributes(self.descriptor, self.previous)
            os.replace(self.temporary, self.path)
            self.committed = True
            fsync_folder(self.folder)
        except OSError as error:
            raise named(error, self.name) from None
        finally:
            self._close()
        return self.name

    def discard(self) -> None:
        self._close()
        if not self.committed and self.temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temporary)

    def _close(self):
        if self.descriptor is not None:
            descriptor, self.descriptor = self.descriptor, None
            os.close(descriptor)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.discard()
        if isinstance(error, OSError) and getattr(error, "destination", None) != self.name:
            raise named(error, self.name) from error
        return False


def npy_header(path, *, label: str | None = "src"):
    """``(shape, fortran_order, dtype)`` of the ``.npy`` file ``path``, checked.

    Raises ``ValueError`` naming the file when it is not a ``.npy`` file (a
    ``.npz`` archive, another format), when it holds Python objects (which are
    never unpickled), or when it is shorter than its header says, before
    anything is allocated for its data.
    """
    name = os.fspath(path)
    subject = _subject(label, name)
    with open(name, "rb") as file:
        magic = file.read(len(_NPY_MAGIC))
        if magic[: len(_ZIP_MAGIC)] == _ZIP_MAGIC:
            raise ValueError(
                f"{subject} is a .npz archive (several arrays), not a .npy file: "
                "save the one array to normalize with np.save"
            )
        if magic != _NPY_MAGIC:
            raise ValueError(f"{subject} is not a valid .npy file (no .npy header)")
        file.seek(0)
        try:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
            else:
                shape, fortran_order, dtype = np.lib.format._read_array_header(file, version)
        except (ValueError, TypeError, SyntaxError, EOFError) as error:
            raise ValueError(f"{subject} is not a valid .npy file: {error}") from None
        data_offset = file.tell()
        size = os.fstat(file.fileno()).st_size
    if dtype.hasobject:
        raise ValueError(
            f"{subject} holds Python objects ({dtype}), which are never unpickled; "
            "scores must be real numbers"
        )
    if any(int(n) < 0 for n in shape):
        raise ValueError(f"{subject} is not a valid .npy file: negative shape {shape}")
    count = math.prod(int(n) for n in shape)
    needed = count * dtype.itemsize
    if size - data_offset < needed:
        raise ValueError(
            f"{subject} is not a valid .npy file: its header describes {count} values "
            f"of {dtype} ({needed} bytes), but the file holds {size - data_offset} bytes "
            "of data"
        )
    return tuple(int(n) for n in shape), bool(fortran_order), dtype
