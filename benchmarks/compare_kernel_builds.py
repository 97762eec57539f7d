"""Time two builds of the compiled kernel side by side, in one process.

Usage::

    python benchmarks/compare_kernel_builds.py BEFORE.so [AFTER.so] [--repeat N] [--rounds R]

``AFTER.so`` defaults to the extension softmaxkit imports. Each extension module is
loaded from its file and swapped in as ``softmaxkit._kernels._kernel`` in turn, so
that both run the same Python code, interleaved round by round (the machine may be
shared; interleaving spreads its noise over both). The figure per case is the median
over all rounds of the time of one ``softmaxkit.softmax(x, out=o)`` call. This is a
development tool for changes to the C kernel, not one of the ``bench_*`` sections.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import statistics
import sys
import time

import numpy as np

import softmaxkit
from softmaxkit import _kernels

CASES = [
    ("float32", (1, 1000)),
    ("float32", (64, 1000)),
    ("float32", (16, 4000)),
    ("float32", (256, 1000)),
    ("float32", (1, 200_000)),
    ("float32", (2, 400_000)),
    ("float64", (64, 1000)),
]


def load(path, alias):
    loader = importlib.machinery.ExtensionFileLoader("softmaxkit._kernels._kernel", path)
    spec = importlib.util.spec_from_file_location(
        "softmaxkit._kernels._kernel", path, loader=loader
    )
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    module.set_counter(_kernels.dispatch_counts)
    return module


def per_call(x, o, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        softmaxkit.softmax(x, out=o)
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    builds = {"before": load(args.before, "before")}
    builds["after"] = load(args.after, "after") if args.after else _kernels._kernel
    rng = np.random.default_rng(0)
    print("| dtype | shape | threads | before (µs) | after (µs) | after / before |")
    print("|---|---|---:|---:|---:|---:|")
    for dtype, shape in CASES:
        x = (rng.standard_normal(shape) * 5).astype(dtype)
        o = np.empty_like(x)
        results = {}
        for threads in args.threads:
            samples = {name: [] for name in builds}
            with softmaxkit.num_threads(threads):
                for _ in range(args.rounds):
                    for name, module in builds.items():
                        _kernels._kernel = module
                        per_call(x, o, 10)  # warm caches and workers
                        samples[name] += per_call(x, o, args.repeat)
                        results[name, threads] = o.copy()
            medians = {name: statistics.median(s) * 1e6 for name, s in samples.items()}
            same = np.array_equal(results["before", threads], results["after", threads])
            print(
                f"| {dtype} | {shape} | {threads} | {medians['before']:.1f} | "
                f"{medians['after']:.1f} | {medians['after'] / medians['before']:.2f}"
                f"{'' if same else ' (results differ!)'} |",
                flush=True,
            )
    _kernels._kernel = builds["after"]


if __name__ == "__main__":
    sys.exit(main())
