"""The kernel's parallel calls on PyTorch's OpenMP team (``softmaxkit.torch._bridge``).

From the first tensor on, the kernel's parallel work runs on the threads of torch's
OpenMP runtime instead of its own pool (``SOFTMAXKIT_SHARE_OPENMP=0`` keeps the pool).
Each road runs in a fresh interpreter: the results must be those of one thread, bit for
bit, where rows are split between threads, the same on both roads for rows split
themselves, right after torch's own calls (its threads still polling), and in a forked
child, which has no team.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from optional import requires_torch, torch

from softmaxkit import _kernels

pytestmark = [
    pytest.mark.skipif(not _kernels.kernel_available(), reason="the kernels are not built"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the team is found in /proc"),
    requires_torch,
]

SCRIPT = r"""
import hashlib, json, os, sys
import numpy as np
import torch
import scipy.special
import softmaxkit as smk
from softmaxkit._kernels import _kernel

torch.set_num_threads(2)
road = sys.argv[1]
assert _kernel.threads_on() == ("pool", 0), _kernel.threads_on()
smk.softmax(torch.ones(2, 3))  # the first tensor brings in the bridge
assert _kernel.threads_on() == (road, 0), (_kernel.threads_on(), road)

FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}
rng = np.random.default_rng(7)
split = [
    (np.float32, (64, 1000), -1), (np.float64, (64, 1000), -1), (np.float32, (4000, 50), -1),
    (np.float32, (1000, 300), 0), (np.float32, (16, 4000), -1),
]
within = [(np.float32, (2, 300_000), -1)]
digests = {}
torch_x = torch.randn(64, 1000)
for dtype, shape, axis in split + within:
    x = (rng.standard_normal(shape) * 8).astype(dtype)
    for name, f in FUNCTIONS.items():
        with smk.num_threads(1):
            single = f(x, axis=axis)
        exact = getattr(scipy.special, name)(x.astype(np.float64), axis=axis)
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(single, exact, rtol=8 * eps, atol=4 * eps * np.abs(exact).max())
        for threads in (2, 3, 2):
            torch.softmax(torch_x, -1)  # torch's threads are polling when the call comes
            with smk.num_threads(threads):
                got = f(x, axis=axis)
            if (dtype, shape, axis) in split:
                assert np.array_equal(got, single), (name, shape, threads)
            else:
                np.testing.assert_allclose(got, single, rtol=4 * eps, atol=0)
            key = f"{name} {shape} {np.dtype(dtype).name} {threads}"
            digests[key] = hashlib.sha256(np.ascontiguousarray(got).tobytes()).hexdigest()

# A forked child has none of the parent's threads, OpenMP's included: it runs on a
# pool of its own, with the same results.
x = (rng.standard_normal((64, 1000)) * 8).astype(np.float32)
with smk.num_threads(1):
    single = smk.softmax(x)
pid = os.fork()
if pid == 0:
    try:
        with smk.num_threads(2):
            ok = np.array_equal(smk.softmax(x), single) and _kernel.threads_on()[0] == "pool"
    finally:
        os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
with smk.num_threads(2):
    assert np.array_equal(smk.softmax(x), single)
# Each call with 2 or 3 threads ran on the team (at least once: rows split within
# themselves take one run per pass), none on the other road.
runs = _kernel.threads_on()[1]
assert (runs == 0) if road == "pool" else (runs >= 6 * 3 * 3 + 1), runs
print(json.dumps(digests))
"""


def run_road(road):
    env = dict(os.environ, SOFTMAXKIT_SHARE_OPENMP="1" if road == "openmp" else "0")
    env.pop("SOFTMAXKIT_NUM_THREADS", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, road], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def roads():
    if not torch._C.has_openmp:
        pytest.skip("this PyTorch has no OpenMP")
    return {road: run_road(road) for road in ("openmp", "pool")}


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork() on this platform"
)
def test_both_roads_give_the_single_thread_results(roads):
    # The script asserts the single-thread results itself; here both roads agree, bit
    # for bit, also on rows split within themselves (the same split on each road).
    assert roads["openmp"].keys() == roads["pool"].keys()
    assert len(roads["openmp"]) == 6 * 3 * 2  # six inputs, three functions, 2 and 3 threads
    assert roads["openmp"] == roads["pool"]
