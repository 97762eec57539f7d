"""Helpers of the command's tests: a small tmpfs, a file-size limit, the installed command.

A full disk is made two ways: a tmpfs of a few hundred KiB mounted for the test
(needs root and the right to mount; the test is skipped otherwise), and a
file-size limit (``ulimit -f``, RLIMIT_FSIZE) on the child process with SIGXFSZ
ignored, so that a write past the limit fails with EFBIG as one past a full disk
fails with ENOSPC (works for any user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Above this, a .npy written to a .npy streams through softmax_file (softmaxkit.cli).
LARGE_INPUT_BYTES = 256 * 2**20


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "1m", *, read_only: bool = False):
    """A tmpfs of ``size`` mounted on ``folder`` for the block; skips the test if none."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
        if os.path.ismount(folder):
            subprocess.run(["umount", "-l", str(folder)], check=False)


def limited(argv, *, file_size: int | None = None, umask: int | None = None) -> list:
    """``argv`` run through bash with a file-size limit and/or a umask.

    ``ulimit -f`` with SIGXFSZ ignored (an ignored signal stays ignored across
    exec) makes writes past ``file_size`` bytes fail with EFBIG, as writes past a
    full disk fail with ENOSPC. A shell rather than ``preexec_fn``, which is unsafe
    in a process with threads (the kernel's thread pool).
    """
    steps = []
    if file_size is not None:
        if file_size % 1024:
            raise ValueError("ulimit -f counts blocks of 1024 bytes")
        steps += [f"ulimit -f {file_size // 1024}", "trap '' XFSZ"]
    if umask is not None:
        steps.append(f"umask {umask:03o}")
    return ["bash", "-c", " && ".join([*steps, 'exec "$0" "$@"']), *map(str, argv)]


def sparse_npy(path: Path, shape, dtype=np.float32) -> Path:
    """A .npy of zeros that takes no disk space (a sparse file): large inputs for free."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    del array
    return path


def large_npy(path: Path) -> Path:
    """A .npy of zeros just over the size above which the command streams it."""
    rows = LARGE_INPUT_BYTES // (4 * 2**18) + 1
    return sparse_npy(path, (rows, 2**18))


def installed_command() -> str:
    """The ``softmax`` console script installed next to this Python; skips if none."""
    folder = os.path.dirname(sys.executable)
    script = shutil.which("softmax", path=os.pathsep.join([folder, os.environ.get("PATH", "")]))
    if script is None:
        pytest.skip("the softmax console script is not installed")
    return script


def temporaries(folder: Path) -> list[str]:
    """The temporary files the command or softmax_file may leave in ``folder``."""
    return sorted(p for p in os.listdir(folder) if p.startswith((".tmp-", ".softmax-")))


def shell(command: str, *, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """``command`` in bash, with the installed ``softmax`` first on the PATH."""
    folder = os.path.dirname(installed_command())
    env = dict(os.environ, PATH=os.pathsep.join([folder, os.environ.get("PATH", "")]))
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
