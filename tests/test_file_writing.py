"""softmax_file and the command's output files: written whole or not at all.

A full disk is made in a child process (a small tmpfs, or RLIMIT_FSIZE): writing
through a memory map into a file system that fills up would end the process with
SIGBUS. The rules of replacing a destination (mode kept, symbolic links written
through, read-only and hard-linked files only with ``force``, a sync before the
rename) are checked on softmax_file and on the command's small-file path, which
share them.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import limited, small_tmpfs, temporaries

import softmaxkit as smk
from softmaxkit import cli, streaming

# softmax_file in a child process; an OSError is reported as JSON on standard output.
_SOFTMAX_FILE = """
import json, sys
import softmaxkit as smk
try:
    smk.softmax_file(sys.argv[1], sys.argv[2], chunk_bytes=2**18, progress=False)
except OSError as error:
    print(json.dumps({"errno": error.errno, "filename": error.filename, "text": str(error)}))
else:
    print("null")
"""


def _softmax_file_in_a_child(src, dst, file_size=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        limited([sys.executable, "-c", _SOFTMAX_FILE, src, dst], file_size=file_size),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    # -7 would be SIGBUS: a write through the memory map into a full file system.
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return json.loads(done.stdout)


def _random_npy(path, shape=(512, 1024)):
    # Random values: a Zarr destination compresses them little, as zeros would not be.
    np.save(path, np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    return path


def _reference_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.longdouble)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("name", ["p.npy", "p.zarr"])
def test_a_full_disk_is_an_oserror_naming_dst(tmp_path, name):
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    src = _random_npy(tmp_path / "x.npy")  # 2 MiB in, 2 MiB out
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "keep").write_bytes(b"x")
        dst = disk / name
        error = _softmax_file_in_a_child(src, dst)
        assert error is not None and error["errno"] == errno.ENOSPC
        assert error["filename"] == str(dst)
        assert os.listdir(disk) == ["keep"]


def test_a_file_size_limit_is_an_oserror_naming_dst(tmp_path):
    src = _random_npy(tmp_path / "x.npy")
    dst = tmp_path / "p.npy"
    error = _softmax_file_in_a_child(src, dst, file_size=2**20)
    assert error is not None and error["errno"] == errno.EFBIG
    assert error["filename"] == str(dst)
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]


def test_a_file_that_fits_on_a_small_disk_is_written(tmp_path):
    src = _random_npy(tmp_path / "x.npy", (64, 1024))  # 256 KiB
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        assert _softmax_file_in_a_child(src, disk / "p.npy") is None
        x = np.load(src)
        np.testing.assert_allclose(np.load(disk / "p.npy"), _reference_softmax(x), rtol=3e-7)
        assert os.listdir(disk) == ["p.npy"]


# --- modes and links -------------------------------------------------------------------------


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


@pytest.fixture
def src(tmp_path):
    return _random_npy(tmp_path / "x.npy", (8, 16))


def _check_result(src, dst):
    got = np.load(dst)
    np.testing.assert_allclose(got, _reference_softmax(np.load(src)), rtol=3e-7, atol=0)


def test_a_new_file_gets_0666_less_the_umask(tmp_path, src, umask_027):
    dst = tmp_path / "p.npy"
    smk.softmax_file(src, dst, progress=False)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o640
    _check_result(src, dst)


def test_a_new_zarr_folder_gets_0777_less_the_umask(tmp_path, src, umask_027):
    zarr = pytest.importorskip("zarr")
    dst = tmp_path / "p.zarr"
    smk.softmax_file(src, dst, progress=False)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o750
    got = zarr.open_array(str(dst), mode="r")[...]
    np.testing.assert_allclose(got, _reference_softmax(np.load(src)), rtol=3e-7)


@pytest.mark.parametrize("mode", [0o600, 0o664])
def test_an_existing_file_keeps_its_mode(tmp_path, src, mode):
    dst = tmp_path / "p.npy"
    dst.write_bytes(b"old")
    dst.chmod(mode)
    smk.softmax_file(src, dst, progress=False)
    assert stat.S_IMODE(dst.stat().st_mode) == mode
    _check_result(src, dst)


def test_a_read_only_file_is_replaced_only_with_force(tmp_path, src):
    dst = tmp_path / "p.npy"
    dst.write_bytes(b"old")
    dst.chmod(0o444)
    with pytest.raises(PermissionError, match=r"dst '.*p\.npy' is read-only \(mode 0444\)"):
        smk.softmax_file(src, dst, progress=False)
    assert dst.read_bytes() == b"old"
    smk.softmax_file(src, dst, progress=False, force=True)
    _check_result(src, dst)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o444
    assert temporaries(tmp_path) == []


def test_a_hard_linked_file_is_replaced_only_with_force(tmp_path, src):
    dst, other = tmp_path / "p.npy", tmp_path / "other.npy"
    dst.write_bytes(b"old")
    os.link(dst, other)
    with pytest.raises(FileExistsError, match="1 other hard link.*force=True"):
        smk.softmax_file(src, dst, progress=False)
    assert dst.read_bytes() == b"old"
    smk.softmax_file(src, dst, progress=False, force=True)
    _check_result(src, dst)
    assert other.read_bytes() == b"old"


def test_a_symbolic_link_is_written_through(tmp_path, src):
    (tmp_path / "data").mkdir()
    real, link = tmp_path / "data" / "p.npy", tmp_path / "p.npy"
    real.write_bytes(b"old")
    real.chmod(0o640)
    link.symlink_to(os.path.join("data", "p.npy"))
    assert smk.softmax_file(src, link, progress=False) == str(link)
    assert link.is_symlink()
    _check_result(src, real)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert temporaries(tmp_path) == [] and temporaries(tmp_path / "data") == []
    # A dangling link: its target is created.
    real.unlink()
    smk.softmax_file(src, link, progress=False)
    _check_result(src, real)


def _no_work(*args, **kwargs):
    raise AssertionError("the source was opened: the destination is checked first")


def test_dst_is_checked_before_any_work(tmp_path, src, monkeypatch):
    monkeypatch.setattr(streaming._file_softmax, "_open_source", _no_work)
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(IsADirectoryError, match="dst '.*d.npy' is a folder"):
        smk.softmax_file(src, tmp_path / "d.npy", progress=False)
    os.mkfifo(tmp_path / "f.npy")
    with pytest.raises(FileExistsError, match="is a FIFO, not a regular file"):
        smk.softmax_file(src, tmp_path / "f.npy", progress=False)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        smk.softmax_file(src, tmp_path / "missing" / "p.npy", progress=False)
    (tmp_path / "file.zarr").write_bytes(b"")
    with pytest.raises(FileExistsError, match="is not a folder"):
        smk.softmax_file(src, tmp_path / "file.zarr", progress=False)


def _record_syncs(monkeypatch):
    """Every fsync (of a file or a folder, and which file) and rename, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        status = os.fstat(descriptor)
        kind = "folder" if stat.S_ISDIR(status.st_mode) else "file"
        events.append(("fsync", kind, status.st_ino))
        return real_fsync(descriptor)

    def replace(source, target, **kwargs):
        events.append(("replace", os.stat(source).st_ino, os.fspath(target)))
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _assert_synced_then_renamed(events, dst):
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 1 and renames[0][2] == os.path.realpath(dst)
    renamed_inode = renames[0][1]
    position = events.index(renames[0])
    # The data of the file renamed, before the rename; its folder, after it.
    assert ("fsync", "file", renamed_inode) in events[:position]
    assert ("fsync", "folder", os.stat(os.path.dirname(dst)).st_ino) in events[position:]
    assert os.stat(dst).st_ino == renamed_inode


def test_softmax_file_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, src, monkeypatch):
    events = _record_syncs(monkeypatch)
    dst = tmp_path / "p.npy"
    smk.softmax_file(src, dst, progress=False)
    _assert_synced_then_renamed(events, dst)


@pytest.mark.parametrize("name", ["p.npy", "p.txt"])
def test_the_command_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, monkeypatch, name):
    events = _record_syncs(monkeypatch)
    dst = tmp_path / name
    assert cli.main(["1", "3", "2", "-o", str(dst)]) == 0
    _assert_synced_then_renamed(events, dst)


# --- sources -------------------------------------------------------------------------------


def test_sources_that_are_not_npy_files_are_named(tmp_path):
    dst = tmp_path / "p.npy"
    archive = tmp_path / "x.npz"
    np.savez(archive, x=np.zeros(3))
    with pytest.raises(ValueError, match=r"src '.*x\.npz' is a \.npz archive"):
        smk.softmax_file(archive, dst, progress=False)
    garbage = tmp_path / "g.npy"
    garbage.write_bytes(b"garbage " * 10)
    with pytest.raises(ValueError, match=r"src '.*g\.npy' is not a valid \.npy file"):
        smk.softmax_file(garbage, dst, progress=False)
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as file:
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
        np.lib.format.write_array_header_1_0(file, header)
        file.write(b"\0" * 64)
    with pytest.raises(ValueError, match=r"src '.*huge\.npy' is not a valid .* 1000000000000"):
        smk.softmax_file(huge, dst, progress=False)
    objects = tmp_path / "o.npy"
    np.save(objects, np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"src '.*o\.npy' holds Python objects"):
        smk.softmax_file(objects, dst, progress=False)
    words = tmp_path / "w.npy"
    np.save(words, np.array(["a", "b"]))
    with pytest.raises(TypeError, match=r"src '.*w\.npy' holds <U1 values"):
        smk.softmax_file(words, dst, progress=False)
    assert not dst.exists() and temporaries(tmp_path) == []


def test_zarr_errors_name_src(tmp_path):
    pytest.importorskip("zarr")
    dst = tmp_path / "p.npy"
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("not json")
    with pytest.raises(ValueError, match=r"src '.*broken\.zarr' is not a readable Zarr array"):
        smk.softmax_file(broken, dst, progress=False)
    with pytest.raises(FileNotFoundError) as missing:
        smk.softmax_file(tmp_path / "missing.zarr", dst, progress=False)
    assert missing.value.filename == str(tmp_path / "missing.zarr")
    assert not dst.exists()
