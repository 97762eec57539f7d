"""Time the SIMD variants of the compiled kernel against each other, one thread each.

Usage: ``python benchmarks/compare_simd.py [--rounds R]``; writes
``benchmarks/results_simd.md``.

``SOFTMAXKIT_SIMD`` is read at import, so each variant runs in a process of its own;
the processes take turns, round by round, and the figure per case is the minimum over
all rounds and repeats (the machine is shared: the minimum is the run least disturbed
by the other jobs). One thread, so that the other jobs' load does not stall a second
worker. Also the time per entry of float16 and bfloat16 against float32. A
development tool beside ``compare_kernel_builds.py``, not one of the ``bench_*``
sections (``make bench`` does not run it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [
    ("softmax", "float32", (256, 32000), -1),
    ("softmax", "float32", (32, 128256), -1),
    ("softmax", "float32", (4096, 4096), -1),
    ("softmax", "float32", (4096, 4096), 0),
    ("softmax", "float32", (1_000_000, 10), -1),
    ("softmax", "float32", (64, 1000), -1),
    ("log_softmax", "float32", (256, 32000), -1),
    ("logsumexp", "float32", (256, 32000), -1),
    ("softmax", "float64", (256, 32000), -1),
    ("log_softmax", "float64", (256, 32000), -1),
    ("logsumexp", "float64", (256, 32000), -1),
    ("softmax", "float16", (256, 32000), -1),
    ("softmax", "bfloat16", (256, 32000), -1),
]


def _child():
    import numpy as np

    import softmaxkit as smk
    from softmaxkit import _kernels

    smk.set_num_threads(1)
    times = []
    for op, dtype, shape, axis in CASES:
        if dtype == "bfloat16":
            import ml_dtypes

            dt = ml_dtypes.bfloat16
        else:
            dt = np.dtype(dtype)
        x = (np.random.default_rng(0).standard_normal(shape) * 4).astype(dt)
        fn = getattr(smk, op)
        out = fn(x, axis=axis)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            if op == "logsumexp":
                fn(x, axis=axis)
            else:
                fn(x, axis=axis, out=out)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    print(json.dumps({"simd": _kernels.simd(), "times": times}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    from softmaxkit import _kernels

    variants = [v for v in _kernels._kernel.simd_built()]
    best = {}
    for _ in range(options.rounds):
        for variant in variants:
            env = dict(os.environ, SOFTMAXKIT_SIMD=variant)
            done = subprocess.run(
                [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--child"],
                env=env, capture_output=True, text=True, check=True,
            )
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            if answer["simd"] != variant:
                continue  # not supported here
            previous = best.get(variant, [float("inf")] * len(CASES))
            best[variant] = [min(a, b) for a, b in zip(previous, answer["times"])]
    ran = [v for v in variants if v in best]
    lines = ["## SIMD variants side by side (`benchmarks/compare_simd.py`)", ""]
    lines.append(
        f"One thread; `softmax`/`log_softmax` with `out=`; the minimum over {options.rounds} "
        "rounds of 5 calls, the variants' processes taking turns (the machine is shared)."
    )
    lines.append("")
    head = ["op", "dtype", "shape", "axis"] + [f"{v}" for v in ran]
    head += [f"{v}/{ran[0]}" for v in ran[1:]] + [f"ns/entry {ran[0]}"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for i, (op, dtype, shape, axis) in enumerate(CASES):
        size = 1
        for n in shape:
            size *= n
        cells = [op, dtype, str(shape), str(axis)]
        cells += [f"{best[v][i] * 1e3:.2f} ms" for v in ran]
        cells += [f"{best[v][i] / best[ran[0]][i]:.2f}" for v in ran[1:]]
        cells += [f"{best[ran[0]][i] / size * 1e9:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "results_simd.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child()
    else:
        main()
