"""The compiled kernels' pool of worker threads: the same results whatever the thread
count, from several Python threads at once, after fork(), and a clean interpreter exit.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import softmaxkit as smk
from softmaxkit import _dispatch, _kernels

pytestmark = pytest.mark.skipif(
    not _kernels.kernel_available(), reason="the compiled kernels are not built"
)

scipy_special = pytest.importorskip("scipy.special")

FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}

# Inputs whose rows (or blocks of rows) are split between threads: the result does not
# depend on the thread count, bit for bit. (1, 1000) is too small for a second thread.
SPLIT_ROWS = [
    (np.float32, (64, 1000), -1),
    (np.float32, (16, 4000), -1),
    (np.float64, (64, 1000), -1),
    (np.float32, (4000, 50), -1),
    (np.float64, (3, 5, 6000), 1),
    (np.float32, (1000, 300), 0),
    (np.float32, (1, 1000), -1),
]
# Rows long enough to be split themselves (three passes per row): the partial sums
# are combined in an order that depends on the thread count, so results are the same
# bit for bit only for the same count.
WITHIN_ROWS = [(np.float32, (2, 300_000), -1), (np.float64, (1, 270_000), -1)]


def make_input(dtype, shape, seed):
    return (np.random.default_rng(seed).standard_normal(shape) * 8).astype(dtype)


def scipy_reference(name, x, axis):
    x64 = x.astype(np.float64)
    if name == "softmax":
        return scipy_special.softmax(x64, axis=axis)
    if name == "log_softmax":
        return scipy_special.log_softmax(x64, axis=axis)
    return scipy_special.logsumexp(x64, axis=axis)


def assert_close_to_scipy(name, got, x, axis):
    expected = scipy_reference(name, x, axis)
    eps = np.finfo(x.dtype).eps
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(got, expected, rtol=8 * eps, atol=4 * eps * scale)


def call(name, x, axis, threads, out=None):
    before = _dispatch.counts["kernel"]
    with smk.num_threads(threads):
        if out is None:
            result = FUNCTIONS[name](x, axis=axis)
        else:
            result = FUNCTIONS[name](x, axis=axis, out=out)
    assert _dispatch.counts["kernel"] == before + 1, "the kernel did not run"
    return result


@pytest.fixture(scope="module")
def split_cases():
    """(name, x, axis, single-thread result) for every function and SPLIT_ROWS input."""
    cases = []
    for seed, (dtype, shape, axis) in enumerate(SPLIT_ROWS):
        x = make_input(dtype, shape, seed)
        for name in FUNCTIONS:
            single = call(name, x, axis, 1)
            assert_close_to_scipy(name, single, x, axis)
            cases.append((name, x, axis, single))
    return cases


def test_thread_counts_give_identical_results_over_many_calls(split_cases):
    # Consecutive calls of mixed sizes and thread counts: workers started for an earlier
    # call (and their scratch, grown or not) serve the later ones.
    for threads in [2, 5, 2, 3, 1, 7, 2]:
        for name, x, axis, single in split_cases:
            got = call(name, x, axis, threads)
            np.testing.assert_array_equal(got, single, err_msg=f"{name} {x.shape} {threads}")
            if name != "logsumexp":
                out = np.full_like(x, np.nan)
                assert call(name, x, axis, threads, out=out) is out
                np.testing.assert_array_equal(out, single)


@pytest.mark.parametrize("dtype, shape, axis", WITHIN_ROWS)
def test_rows_split_between_threads(dtype, shape, axis):
    x = make_input(dtype, shape, 40)
    for name in FUNCTIONS:
        single = call(name, x, axis, 1)
        assert_close_to_scipy(name, single, x, axis)
        for threads in (2, 5):
            first = call(name, x, axis, threads)
            assert_close_to_scipy(name, first, x, axis)
            np.testing.assert_allclose(first, single, rtol=4 * np.finfo(dtype).eps, atol=0)
            for _ in range(3):
                np.testing.assert_array_equal(call(name, x, axis, threads), first)


def test_calls_from_several_python_threads_at_once(split_cases):
    # The kernels release the GIL: calls overlap, one of them on the pool and the others
    # on threads of their own, and every result is the single-thread one.
    long_rows = make_input(np.float32, (2, 300_000), 41)
    with smk.num_threads(3):
        long_expected = smk.softmax(long_rows)
    start = threading.Barrier(4)

    def work(worker):
        start.wait()
        for round_ in range(6):
            for i, (name, x, axis, single) in enumerate(split_cases):
                if (i + worker + round_) % 3:
                    continue
                got = FUNCTIONS[name](x, axis=axis)
                if not np.array_equal(got, single):
                    return f"{name} {x.shape} differs"
            if not np.array_equal(smk.softmax(long_rows), long_expected):
                return "softmax of long rows differs"
        return None

    with smk.num_threads(3):
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
            problems = list(executor.map(work, range(4)))
    assert problems == [None] * 4


def test_changing_the_thread_count_between_calls_from_several_threads(split_cases):
    # The count is read at each call: threads setting it in turn still get the
    # single-thread results, while the pool grows and is partly idle.
    name, x, axis, single = split_cases[0]

    def work(threads):
        for _ in range(20):
            smk.set_num_threads(threads)
            got = FUNCTIONS[name](x, axis=axis)
            if not np.array_equal(got, single):
                return threads
        return None

    previous = smk.get_num_threads()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as executor:
            assert list(executor.map(work, [1, 2, 6, 3])) == [None] * 4
    finally:
        smk.set_num_threads(previous)


# The fork tests run in a fresh interpreter: other tests load libraries (JAX, TensorFlow)
# whose own threads make fork() in the test process unsafe for reasons of their own.
FORK_SCRIPT = """
import multiprocessing
import sys
import threading
import numpy as np
import scipy.special
import softmaxkit as smk

def softmax_in_child(x, expected, threads):
    with smk.num_threads(threads):
        got = smk.softmax(x)
    if not np.array_equal(got, expected):
        raise SystemExit(3)

def run_child(x, expected, threads):
    child = context.Process(target=softmax_in_child, args=(x, expected, threads))
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
        child.join()
        raise SystemExit("the child hung: it waited for workers it does not have")
    assert child.exitcode == 0, child.exitcode

context = multiprocessing.get_context("fork")
rng = np.random.default_rng(42)
x = (rng.standard_normal((64, 1000)) * 8).astype(np.float32)
long_rows = rng.standard_normal((1, 270_000)) * 8
with smk.num_threads(1):
    single = smk.softmax(x)
    long_single = smk.softmax(long_rows)
with smk.num_threads(2):
    long_two = smk.softmax(long_rows)
for got, data, eps in [(single, x, 2**-23), (long_two, long_rows, 2**-52)]:
    expected = scipy.special.softmax(data.astype(np.float64), axis=-1)
    np.testing.assert_allclose(got, expected, rtol=8 * eps, atol=4 * eps * expected.max())

if sys.argv[1] == "idle":
    # The parent's workers exist (idle) at each fork; the child has to start its own.
    with smk.num_threads(4):
        assert np.array_equal(smk.softmax(x), single)
    run_child(x, single, 4)
    run_child(x, single, 2)
    run_child(long_rows, long_two, 2)
    run_child(long_rows, long_single, 1)
else:
    # The fork comes while another thread uses the pool, its mutex held by a thread
    # the child does not have: the child starts from a fresh pool all the same.
    stop = threading.Event()
    mismatches = []

    def busy():
        while not stop.is_set():
            if not np.array_equal(smk.softmax(x), single):
                mismatches.append(1)

    with smk.num_threads(2):
        runner = threading.Thread(target=busy)
        runner.start()
        try:
            for _ in range(8):
                run_child(x, single, 2)
        finally:
            stop.set()
            runner.join()
    assert not mismatches
# The parent's pool still works.
with smk.num_threads(4):
    assert np.array_equal(smk.softmax(x), single)
"""


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork() on this platform"
)
@pytest.mark.parametrize("pool_state", ["idle", "busy"])
def test_parallel_calls_in_a_forked_child(pool_state):
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, pool_state],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


EXIT_SCRIPT = """
import os
import sys
import threading
import numpy as np
import softmaxkit as smk

def os_threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None

x = np.random.default_rng(0).standard_normal((64, 5000)).astype(np.float32)
before = os_threads()
with smk.num_threads(1):
    single = smk.softmax(x)
with smk.num_threads(5):
    for _ in range(50):
        assert np.array_equal(smk.softmax(x), single)
if before is not None:
    # Four workers (the calling thread is the fifth), kept between calls.
    assert os_threads() == before + 4, (before, os_threads())
{tail}
"""


@pytest.mark.parametrize(
    "tail",
    [
        "",  # exit with idle workers
        # exit while a daemon thread is inside a parallel call
        textwrap.dedent(
            """
            def forever():
                with smk.num_threads(3):
                    while True:
                        smk.softmax(x)
            threading.Thread(target=forever, daemon=True).start()
            """
        ),
        "sys.exit(0)",
    ],
)
def test_interpreter_exit_after_parallel_calls(tail):
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT.replace("{tail}", tail)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, SOFTMAXKIT_NUM_THREADS="2"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
