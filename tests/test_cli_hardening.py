"""The installed ``softmax`` command against full disks, signals, odd files and odd outputs.

Every test runs the console script in a subprocess, as a user would (the signal
tests run the command's ``main`` in a child Python that pauses at a known point,
so that the signal arrives while the output is being written). Errors are one
line ``softmax: error: ...``: exit status 2 for usage, 1 for a failed computation
or write; outputs are written whole or not at all.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    installed_command,
    large_npy,
    limited,
    shell,
    small_tmpfs,
    temporaries,
)

import softmaxkit


def softmax(*argv, cwd=None, stdout=subprocess.PIPE, file_size=None, umask=None, timeout=120):
    return subprocess.run(
        limited([installed_command(), *argv], file_size=file_size, umask=umask),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def assert_one_error(done, status, *words):
    assert done.returncode == status, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("softmax: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def reference_softmax(x):
    """exp(x - max) / sum in long double: an independent reference for plain inputs."""
    x = np.asarray(x, dtype=np.longdouble)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float64)


def numbers(text):
    return np.asarray([[float(v) for v in line.split()] for line in text.splitlines()])


# --- full disks ------------------------------------------------------------------------------


def test_a_full_disk_while_streaming_is_one_error_naming_the_output(tmp_path):
    source = large_npy(tmp_path / "scores.npy")
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        target = disk / "p.npy"
        done = softmax("-i", source, "-o", target, timeout=600)
        # Not SIGBUS (-7) with a full-size temporary left behind.
        assert_one_error(done, 1, "No space left on device", str(target))
        assert os.listdir(disk) == []


def test_a_file_size_limit_while_streaming_names_the_output(tmp_path):
    source = large_npy(tmp_path / "scores.npy")
    target = tmp_path / "p.npy"
    done = softmax("-i", source, "-o", target, file_size=2**20, timeout=600)
    assert_one_error(done, 1, "File too large", str(target))
    assert temporaries(tmp_path) == [] and not target.exists()


@pytest.mark.parametrize("full", ["tmpfs", "file size limit"])
def test_a_full_disk_on_a_small_npy_is_one_error_naming_the_output(tmp_path, full):
    scores = np.random.default_rng(0).standard_normal(25_000)  # a 200 kB result
    source = tmp_path / "scores.npy"
    np.save(source, scores)
    if full == "tmpfs":
        with small_tmpfs(tmp_path / "disk", "128k") as disk:
            target = disk / "p.npy"
            target.write_bytes(b"old")
            done = softmax("-i", source, "-o", target)
            assert_one_error(done, 1, "No space left on device", str(target))
            assert target.read_bytes() == b"old" and temporaries(disk) == []
    else:
        target = tmp_path / "p.npy"
        target.write_bytes(b"old")
        done = softmax("-i", source, "-o", target, file_size=128 * 1024)
        # Not numpy's "N requested and M written", which has no errno.
        assert_one_error(done, 1, "File too large", str(target))
        assert "requested" not in done.stderr
        assert target.read_bytes() == b"old" and temporaries(tmp_path) == []


# --- signals ---------------------------------------------------------------------------------

# The command's main, paused while the output is being written: in the streamed
# path inside the first block's softmax, in the small-file path inside np.save.
_PAUSED_COMMAND = """
import pathlib, sys, time
import numpy as np
import softmaxkit._softmax as core
from softmaxkit import cli

ready, where = pathlib.Path(sys.argv[1]), sys.argv[2]

def pause():
    ready.write_text("ready")
    time.sleep(120)

if where == "streamed":
    cli._input.LARGE_INPUT_BYTES = 0
    real = core.softmax

    def softmax(*args, **kwargs):
        pause()
        return real(*args, **kwargs)

    core.softmax = softmax
else:
    def save(file, *args, **kwargs):
        file.write(b"partial")
        pause()

    np.save = save
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("where", ["streamed", "small"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_while_writing_removes_the_temporary_file(tmp_path, where, signum):
    source, target = tmp_path / "scores.npy", tmp_path / "p.npy"
    np.save(source, np.arange(12.0).reshape(3, 4))
    target.write_bytes(b"old")
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_COMMAND, ready, where, "-i", source, "-o", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), process.communicate(timeout=10)
        ready.unlink()
        assert len(temporaries(tmp_path)) == 1  # the output is being written
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, (process.returncode, err)
    assert "Traceback" not in err
    assert temporaries(tmp_path) == []
    assert target.read_bytes() == b"old"


# --- modes and links -------------------------------------------------------------------------


def _source(tmp_path, where):
    if where == "streamed":
        return large_npy(tmp_path / "scores.npy")
    source = tmp_path / "scores.npy"
    np.save(source, np.zeros((2, 4), dtype=np.float32))
    return source


def _assert_uniform(target, where):
    rows = np.load(target, mmap_mode="r")[:2]
    # softmax of zeros: 1/n exactly, n a power of two
    np.testing.assert_array_equal(rows, np.float32(1 / rows.shape[-1]))


@pytest.mark.parametrize("where", ["small", "streamed"])
def test_a_new_output_gets_0666_less_the_umask(tmp_path, where):
    source, target = _source(tmp_path, where), tmp_path / "p.npy"
    done = softmax("-i", source, "-o", target, umask=0o027, timeout=600)
    assert (done.returncode, done.stderr) == (0, "")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    _assert_uniform(target, where)


@pytest.mark.parametrize(
    ("where", "mode"), [("small", 0o600), ("small", 0o664), ("streamed", 0o664)]
)
def test_an_existing_output_keeps_its_mode(tmp_path, where, mode):
    source, target = _source(tmp_path, where), tmp_path / "p.npy"
    target.write_bytes(b"old")
    target.chmod(mode)
    done = softmax("-i", source, "-o", target, umask=0o022, timeout=600)
    assert (done.returncode, done.stderr) == (0, "")
    assert stat.S_IMODE(target.stat().st_mode) == mode
    _assert_uniform(target, where)
    assert temporaries(tmp_path) == []


def test_a_read_only_output_is_replaced_only_with_force(tmp_path):
    target = tmp_path / "p.txt"
    target.write_text("old\n")
    target.chmod(0o444)
    done = softmax("1", "3", "2", "-o", target)
    assert_one_error(done, 2, "-o/--output", "read-only", "0444", "--force")
    assert target.read_text() == "old\n"
    done = softmax("1", "3", "2", "-o", target, "--force")
    assert (done.returncode, done.stderr) == (0, "")
    np.testing.assert_allclose(numbers(target.read_text())[0], reference_softmax([1, 3, 2]))
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    assert temporaries(tmp_path) == []


def test_a_hard_linked_output_is_replaced_only_with_force(tmp_path):
    target, other = tmp_path / "p.txt", tmp_path / "other.txt"
    target.write_text("old\n")
    os.link(target, other)
    done = softmax("1", "3", "2", "-o", target)
    assert_one_error(done, 2, "-o/--output", "1 other hard link", "--force")
    assert target.read_text() == other.read_text() == "old\n"
    done = softmax("1", "3", "2", "-o", target, "--force")
    assert done.returncode == 0
    # The name gets the new file; the other link keeps the old contents.
    np.testing.assert_allclose(numbers(target.read_text())[0], reference_softmax([1, 3, 2]))
    assert other.read_text() == "old\n" and target.stat().st_nlink == 1


@pytest.mark.parametrize("where", ["small", "streamed"])
def test_a_symbolic_link_is_written_through(tmp_path, where):
    source = _source(tmp_path, where)
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "p.npy"
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = tmp_path / "p.npy"
    link.symlink_to(Path("data") / "p.npy")
    done = softmax("-i", source, "-o", link, timeout=600)
    assert (done.returncode, done.stderr) == (0, "")
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "p.npy")
    _assert_uniform(real, where)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert temporaries(tmp_path) == [] and temporaries(tmp_path / "data") == []


def test_a_fifo_or_folder_as_output_is_refused_before_any_work(tmp_path):
    fifo = tmp_path / "p.txt"
    os.mkfifo(fifo)
    assert_one_error(softmax("1", "2", "-o", fifo, timeout=60), 2, "-o/--output", "FIFO")
    (tmp_path / "d.npy").mkdir()
    assert_one_error(softmax("1", "2", "-o", tmp_path / "d.npy"), 2, "-o/--output", "folder")
    assert sorted(os.listdir(tmp_path)) == ["d.npy", "p.txt"]


# --- bench is gone ---------------------------------------------------------------------------


def test_softmax_bench_is_an_unknown_command_that_runs_nothing(tmp_path):
    # A benchmarks/run.py planted in a parent folder (world-writable, say) of the user's.
    (tmp_path / "benchmarks").mkdir()
    marker = tmp_path / "ran"
    (tmp_path / "benchmarks" / "run.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (tmp_path / "work").mkdir()
    for argv in (["bench"], ["bench", "--root", str(tmp_path)]):
        done = softmax(*argv, cwd=tmp_path / "work")
        assert_one_error(done, 2, "unknown command 'bench'")
    assert done.stdout == "" and not marker.exists()
    assert not re.search(r"^\s*softmax bench\b", softmax("--help").stdout, flags=re.M)


# --- one line errors -------------------------------------------------------------------------


def _npy_with_header(path, shape, dtype="<f8", data=b"\0" * 16):
    with open(path, "wb") as file:
        header = {"descr": dtype, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(file, header)
        file.write(data)
    return path


@pytest.mark.parametrize("output", [None, "p.npy", "p.csv"])
def test_a_npy_header_claiming_more_than_the_file_holds(tmp_path, output):
    source = _npy_with_header(tmp_path / "huge.npy", (10**12,))
    argv = ["-i", source] + (["-o", tmp_path / output] if output else [])
    done = softmax(*argv)
    # Not a MemoryError traceback: the file is refused from its size.
    assert_one_error(done, 2, "-i/--input", "not a valid .npy", "1000000000000 values")
    assert sorted(os.listdir(tmp_path)) == ["huge.npy"]


def test_a_read_only_output_folder_names_the_output(tmp_path):
    folder = tmp_path / "out"
    # Root may write into any folder of a writable file system: a read-only mount, then.
    read_only = small_tmpfs(folder, read_only=True) if os.geteuid() == 0 else None
    with read_only or _read_only_folder(folder):
        for name in ("p.npy", "p.txt"):
            target = folder / name
            done = softmax("1", "3", "2", "-o", target)
            assert_one_error(done, 2, "-o/--output", repr(str(target)))
            assert ".softmax-" not in done.stderr and ".tmp-" not in done.stderr


class _read_only_folder:
    def __init__(self, folder):
        folder.mkdir()
        self.folder = folder

    def __enter__(self):
        self.folder.chmod(0o555)
        return self.folder

    def __exit__(self, *exc):
        self.folder.chmod(0o755)


def test_an_input_that_is_a_folder_or_a_fifo(tmp_path):
    (tmp_path / "scores.csv").mkdir()
    done = softmax("-i", tmp_path / "scores.csv")
    assert_one_error(done, 2, "-i/--input", "is a folder")
    os.mkfifo(tmp_path / "scores.txt")
    # Refused without opening it: opening a FIFO no one writes to would block.
    done = softmax("-i", tmp_path / "scores.txt", timeout=60)
    assert_one_error(done, 2, "-i/--input", "is a FIFO", "-i -")


def test_a_closed_standard_output(tmp_path):
    done = shell("softmax 1 2 3 >&-")
    assert_one_error(done, 1, "standard output is closed")
    assert "Traceback" not in done.stderr
    # With -o, standard output is not needed.
    done = shell(f"softmax 1 2 3 -o {tmp_path / 'p.txt'} >&-")
    assert (done.returncode, done.stderr) == (0, "")


def test_a_broken_pipe_is_one_line():
    # `softmax 1 3 2 | head -c1` where head has gone before the command writes: the
    # pipe has no reader left, every write fails with EPIPE (made certain here by
    # closing the read end before the command starts).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = softmax("1", "3", "2", stdout=write_end)
    finally:
        os.close(write_end)
    assert_one_error(done, 1, "standard output: Broken pipe")
    assert "Exception ignored" not in done.stderr


# --- formats ---------------------------------------------------------------------------------


def _strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_json(tmp_path):
    done = softmax("1", "nan", "-f", "json")
    assert done.returncode == 0 and _strict_json(done.stdout) == [None, None]
    done = softmax("0", "-inf", "--log", "-f", "json")
    # -1e999 is a JSON number that readers take as -infinity
    assert done.stdout == "[0.0, -1e999]\n" and _strict_json(done.stdout) == [0.0, -np.inf]
    target = tmp_path / "p.json"
    assert softmax("0", "nan", "-o", target).returncode == 0
    assert _strict_json(target.read_text()) == [None, None]
    # and back: null reads as NaN, 1e999 as inf, silently
    done = softmax("-i", target, "-f", "json")
    assert (done.stdout, done.stderr) == ("[null, null]\n", "")


def test_quoted_csv_fields(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text('"a","b","c"\n"1", "3",2\n"0.5","-1","4"\n')
    done = softmax("-i", path)
    assert (done.returncode, done.stderr) == (0, "")
    expected = reference_softmax([[1, 3, 2], [0.5, -1, 4]])
    np.testing.assert_allclose(numbers(done.stdout), expected, rtol=2e-15)


def test_a_number_beyond_the_float64_range_warns(tmp_path):
    done = softmax("1e999", "0")
    assert done.returncode == 0 and numbers(done.stdout).tolist() == [[1.0, 0.0]]
    assert done.stderr == "softmax: warning: 1e999 is beyond the float64 range: read as inf\n"
    done = softmax("inf", "0")
    assert (done.returncode, done.stderr) == (0, "")
    path = tmp_path / "scores.csv"
    path.write_text("x,y\n1,2\n-2e400,3\n4,1e999\n")
    done = softmax("-i", path)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"softmax: warning: {path} line 3: -2e400 is beyond the float64 range: read as -inf "
        "(and 1 more such value)"
    ]


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("scores.csv", "1;3;2\n", ["taken as a header", "separated by commas, not ';'"]),
        ("scores.csv", "a;b\n1;3\n", ["line 2", "'1;3'", "commas, not ';'"]),
        ("scores.csv", "1 3 2\n", ["commas, not ' '"]),
        ("scores.txt", "1;3;2\n", ["line 1", "commas or whitespace, not ';'"]),
        ("scores.txt", "1|3|2\n", ["commas or whitespace, not '|'"]),
    ],
)
def test_other_separators_are_named(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    assert_one_error(softmax("-i", path), 2, "-i/--input", *words)


def test_a_garbage_npy_is_not_a_valid_npy(tmp_path):
    path = tmp_path / "scores.npy"
    path.write_bytes(b"garbage " * 20)
    assert_one_error(softmax("-i", path), 2, "-i/--input", "not a valid .npy file")
    archive = tmp_path / "scores.npz.npy"
    np.savez(tmp_path / "scores.npz", x=np.zeros(3))
    os.replace(tmp_path / "scores.npz", archive)
    assert_one_error(softmax("-i", archive), 2, "-i/--input", ".npz archive")


def test_python_objects_in_a_npy_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "scores.npy"
    code = (
        "import numpy as np, sys\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (open, ({str(marker)!r}, 'w'))\n"
        f"np.save({str(path)!r}, np.array([Payload()], dtype=object), allow_pickle=True)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not marker.exists()
    for argv in (["-i", path], ["-i", path, "-o", tmp_path / "p.npy"]):
        assert_one_error(softmax(*argv), 2, "-i/--input", "never unpickled")
    assert not marker.exists()


# --- sample ----------------------------------------------------------------------------------


def _typical_set(logits, mass):
    """The entries of locally typical sampling, computed here in long double: by closeness
    of the surprisal to the entropy, kept until their mass reaches ``mass``."""
    p = reference_softmax(logits).astype(np.longdouble)
    entropy = -np.sum(p * np.log(p))
    order = np.argsort(np.abs(-np.log(p) - entropy), kind="stable")
    kept = np.cumsum(p[order]) < mass
    kept[np.argmin(kept)] = True  # the entry that reaches the mass
    return set(order[kept].tolist())


def test_sample_typical_p(tmp_path):
    logits = [1.0, 3.0, 2.0, 0.5, -1.0]
    argv = ["sample", *map(str, logits), "--typical-p", "0.5", "-n", "200", "-s", "3"]
    done = softmax(*argv)
    assert (done.returncode, done.stderr) == (0, "")
    drawn = [int(v) for v in done.stdout.split()]
    expected = softmaxkit.sample(np.array(logits), typical_p=0.5, num_samples=200, rng=3)
    assert drawn == np.ravel(expected).tolist()
    assert set(drawn) <= _typical_set(logits, 0.5)
    assert "--typical-p" in softmax("sample", "--help").stdout


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "x"])
def test_sample_typical_p_is_checked(value):
    assert_one_error(softmax("sample", "1", "2", "--typical-p", value), 2, "--typical-p")


def test_sample_has_no_precision():
    help_text = softmax("sample", "--help").stdout
    assert "--precision" not in help_text and "DIGITS" not in help_text
    assert_one_error(softmax("sample", "1", "2", "-p", "3"), 2, "unrecognized", "-p")
    assert "--precision" in softmax("--help").stdout  # where it means something


# --- version ---------------------------------------------------------------------------------


def test_version():
    done = softmax("--version")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"softmaxkit {importlib.metadata.version('softmaxkit')}\n"
    assert softmaxkit.__version__ == importlib.metadata.version("softmaxkit")
