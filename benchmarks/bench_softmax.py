"""Benchmark: softmax, log_softmax and logsumexp against the copy bound and the peers.

All implementations run side by side in one process and one run; softmaxkit's other
instruction sets (``avx2`` beside ``avx512``) in worker processes, each row timed there
right after the main process has timed it (``softmax_peers.py``). Each time is the
median over repeats (fewer repeats for the slow peers on big shapes). The table has
the max ulp error of each implementation's result on the row, against a long double
reference. Writes ``benchmarks/results_softmax.md`` and ``benchmarks/results.png``.

Usage: ``python benchmarks/bench_softmax.py [--quick]``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import softmax_peers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [
    ((1, 10), -1),
    ((1, 1000), -1),
    ((64, 1000), -1),
    ((256, 32000), -1),
    ((32, 128256), -1),
    ((4096, 4096), -1),
    ((4096, 4096), 0),
    ((1_000_000, 10), -1),
    ((1, 10_000_000), -1),
]
DTYPES = [np.float32, np.float64]
OPS = ["softmax", "log_softmax", "logsumexp"]
BIG = 4 * 1024 * 1024  # elements from which fewer repeats are taken


def median_time(fn, size, budget, warm_up=True):
    """Median wall time of fn() over repeats; at least 1 run (5 for small inputs)."""
    if warm_up or size < BIG:
        fn()  # first-touch of outputs, lazy imports, thread start-up
    times = []
    start = time.perf_counter()
    max_runs = 9 if size >= BIG else 2000
    min_runs = 1 if size >= BIG else 5
    while len(times) < max_runs:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_runs and time.perf_counter() - start > budget:
            break
    return float(np.median(times)), len(times)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_peaks(fn):
    """(tracemalloc peak, RSS peak above the starting RSS) of one call, in bytes."""
    tracemalloc.start()
    fn()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    base = rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    fn()
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_bytes())
    return traced, peak[0] - base


def numpy_one_liner(op, x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    if op == "softmax":
        e = np.exp(shifted)
        return e / e.sum(axis=axis, keepdims=True)
    if op == "log_softmax":
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(x - m).sum(axis=axis))


def implementations(op, x, axis):
    import scipy.special
    import torch

    import softmaxkit as smk
    from softmaxkit import _kernels

    fn = getattr(smk, op)
    if op == "logsumexp":
        out = np.empty(np.delete(np.array(x.shape), axis % x.ndim), dtype=x.dtype)
    else:
        out = np.empty_like(x)
    copy_target = np.empty_like(x)
    tensor = torch.from_numpy(x)
    torch_fn = {"softmax": torch.softmax, "log_softmax": torch.log_softmax}.get(op)
    scipy_fn = getattr(scipy.special, op)

    def torch_call(threads):
        def run():
            torch.set_num_threads(threads)
            if torch_fn is None:
                return torch.logsumexp(tensor, dim=axis)
            return torch_fn(tensor, dim=axis)

        return run

    def generic():
        with _kernels.generic_only():
            return fn(x, axis=axis)

    impls = {
        "np.copyto (bound)": lambda: np.copyto(copy_target, x),
        "numpy one-liner": lambda: numpy_one_liner(op, x, axis),
        "scipy.special": lambda: scipy_fn(x, axis=axis),
        "torch 1 thread": torch_call(1),
        "torch 2 threads": torch_call(2),
        "softmaxkit": lambda: fn(x, axis=axis),
        "softmaxkit out=": lambda: fn(x, axis=axis, out=out),
        "softmaxkit generic": generic,
    }
    ort = softmax_peers.onnxruntime_call(op, x, axis)
    if ort is not None:
        impls["onnxruntime"] = ort
    return impls


# The implementations whose results are checked against the reference (ulp columns).
ULP_PEERS = {
    "softmaxkit": "smk",
    "numpy one-liner": "NumPy",
    "scipy.special": "SciPy",
    "torch 2 threads": "torch",
    "onnxruntime": "ORT",
}


def fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def main(quick=False):
    import torch

    import softmaxkit as smk
    from softmaxkit import _kernels

    results = {}  # (op, dtype, shape, axis) -> {impl: (time, n)}
    errors = {}  # (op, dtype, shape, axis) -> {impl: max ulp}
    memory = {}
    workers = softmax_peers.other_variants()
    for dtype in DTYPES:
        for shape, axis in SHAPES:
            x = softmax_peers.make_input(dtype, shape)
            size = x.size
            for op in OPS:
                impls = implementations(op, x, axis)
                row = {}
                for name, fn in impls.items():
                    budget = 0.05 if quick else 0.6
                    slow = name in ("softmaxkit generic", "numpy one-liner", "scipy.special")
                    if name == "softmaxkit generic" and size >= BIG:
                        budget = 0.0
                    row[name] = median_time(fn, size, budget, warm_up=not slow)
                for worker in workers:
                    alloc, out = worker.time(op, dtype, shape, axis, 0.05 if quick else 0.6)
                    row[f"softmaxkit {worker.simd}"] = (alloc, 0)
                    row[f"softmaxkit {worker.simd} out="] = (out, 0)
                key = (op, np.dtype(dtype).name, shape, axis)
                results[key] = row
                exact = softmax_peers.reference(op, x, axis)
                floor = x.max(axis=axis) if op == "logsumexp" else None
                errors[key] = {
                    name: softmax_peers.max_ulp(impls[name](), exact, dtype, floor)
                    for name in ULP_PEERS
                    if name in impls
                }
                del exact
                if op == "softmax" and x.nbytes >= 16 * 1024 * 1024 and axis == -1:
                    for name in (
                        "np.copyto (bound)",
                        "softmaxkit out=",
                        "softmaxkit",
                        "scipy.special",
                    ):
                        memory[(np.dtype(dtype).name, shape, name)] = memory_peaks(impls[name])
                print(
                    f"{op:12s} {np.dtype(dtype).name:8s} {str(shape):18s} axis {axis:2d}: "
                    + ", ".join(f"{k} {fmt_time(v[0])}" for k, v in row.items()),
                    flush=True,
                )
            del x
    for worker in workers:
        worker.close()
    torch.set_num_threads(2)
    overhead = dispatch_overhead()
    others = [w.simd for w in workers]
    write_report(results, errors, others, memory, overhead, smk, _kernels)


def dispatch_overhead():
    """Median times of softmax on (1, 10) float32 with out=, of the extension's entry
    called directly, and of an empty Python call (the timing loop's own cost)."""
    import softmaxkit as smk
    from softmaxkit import _kernels

    x = np.random.default_rng(1).standard_normal((1, 10)).astype(np.float32)
    out = np.empty_like(x)
    entry = _kernels.fast_normalize

    def nothing(x, out=None):
        return out

    full, _ = median_time(lambda: smk.softmax(x, out=out), 10, 0.5)
    direct, _ = median_time(lambda: entry(0, x, -1, 1.0, None, None, out), 10, 0.5)
    empty, _ = median_time(lambda: nothing(x, out=out), 10, 0.5)
    return full, direct, empty


def ratio(a, b):
    return a / b if b > 0 else float("nan")


def write_report(results, errors, others, memory, overhead, smk, _kernels):
    main_simd = _kernels.simd()
    lines = ["## Softmax kernels (`benchmarks/bench_softmax.py`)", ""]
    ort = softmax_peers.onnxruntime_version()
    lines.append(
        f"softmaxkit path: compiled kernel, instruction set `{main_simd}`"
        + "".join(f" (and `{o}` in a worker process, columns `smk {o}`)" for o in others)
        + f", {smk.get_num_threads()} threads; PyTorch with 1 and 2 threads; "
        + (f"ONNX Runtime {ort} (CPU, {softmax_peers.THREADS} intra-op threads, opset 13 "
           "`Softmax` / `LogSoftmax` / `ReduceLogSumExp`)" if ort else "ONNX Runtime absent")
        + ". Times are medians; the machine is shared with other jobs and noisy, so "
        "compare ratios within this run. The `ulp` columns are the largest error of each "
        "result on the row in units of the last place (of the exact value rounded to the "
        "dtype; for logsumexp, of max(|result|, |max x|), the unit of its mixed bound), "
        "against a long double reference; input `standard_normal * 4`."
    )
    lines.append("")
    full, direct, empty = overhead
    lines.append(
        f"Dispatch overhead: `softmax` on (1, 10) float32 with `out=` takes {fmt_time(full)} "
        f"in all, of which {fmt_time(empty)} is the cost of any Python call in the timing "
        f"loop; the extension's entry called directly takes {fmt_time(direct)} (its checks "
        "of the arguments and the run). The dispatch, the whole call less the timing "
        f"loop, is at most {fmt_time(full - empty)}."
    )
    lines.append("")
    have_ort = any("onnxruntime" in row for row in results.values())
    targets = []
    for op in OPS:
        for dtype in ("float32", "float64"):
            lines.append(f"### {op}, {dtype}")
            lines.append("")
            head = ["shape", "axis", "copyto", "smk out=", "smk"]
            head += [f"smk {o}" for o in others]
            head += ["generic", "NumPy", "SciPy", "torch 1t", "torch 2t"]
            head += ["ORT"] if have_ort else []
            head += ["out=/copy", "alloc/copy"]
            head += [f"{o}/{main_simd}" for o in others]
            head += ["SciPy/smk", "torch2t/smk"] + (["ORT/smk"] if have_ort else [])
            head += ["NumPy/smk"]
            head += [f"ulp {v}" for k, v in ULP_PEERS.items() if have_ort or k != "onnxruntime"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for shape, axis in SHAPES:
                key = (op, dtype, shape, axis)
                t = {k: v[0] for k, v in results[key].items()}
                s = t["softmaxkit"]
                cells = [str(shape), str(axis), fmt_time(t["np.copyto (bound)"]),
                         fmt_time(t["softmaxkit out="]), fmt_time(s)]
                cells += [fmt_time(t[f"softmaxkit {o}"]) for o in others]
                cells += [fmt_time(t[k]) for k in ("softmaxkit generic", "numpy one-liner",
                                                   "scipy.special", "torch 1 thread",
                                                   "torch 2 threads")]
                cells += [fmt_time(t["onnxruntime"])] if have_ort else []
                cells += [f"{ratio(t['softmaxkit out='], t['np.copyto (bound)']):.2f}",
                          f"{ratio(s, t['np.copyto (bound)']):.2f}"]
                cells += [f"{ratio(t[f'softmaxkit {o}'], s):.2f}" for o in others]
                cells += [f"{ratio(t['scipy.special'], s):.1f}",
                          f"{ratio(t['torch 2 threads'], s):.2f}"]
                cells += [f"{ratio(t['onnxruntime'], s):.2f}"] if have_ort else []
                cells += [f"{ratio(t['numpy one-liner'], s):.1f}"]
                cells += [f"{errors[key][k]:.2f}" for k in ULP_PEERS if k in errors[key]]
                lines.append("| " + " | ".join(cells) + " |")
                size = int(np.prod(shape))
                targets.append((op, dtype, shape, axis, t, size,
                                size * (4 if dtype == "float32" else 8)))
            lines.append("")
    lines.append("### Targets (issue #18)")
    lines.append("")
    checks = {}
    misses = []

    def check(key, ok, text):
        checks.setdefault(key, [0, 0])
        checks[key][0] += bool(ok)
        checks[key][1] += 1
        if not ok:
            misses.append(text)

    for op, dtype, shape, axis, t, size, nbytes in targets:
        s = t["softmaxkit"]
        where = f"{op} {dtype} {shape} axis {axis}"
        torch2 = t["torch 2 threads"]
        if size >= 64_000:
            check("torch 2 threads / smk >= 1.5 (from (64, 1000) up)", torch2 / s >= 1.5,
                  f"{where}: torch2t/smk {torch2 / s:.2f}")
            if "onnxruntime" in t:
                check("ONNX Runtime / smk >= 1 (from (64, 1000) up)", t["onnxruntime"] >= s,
                      f"{where}: ORT/smk {t['onnxruntime'] / s:.2f}")
        elif size in (10, 1000):
            check("(1, 10), (1, 1000): SciPy / smk >= 3", t["scipy.special"] / s >= 3,
                  f"{where}: SciPy/smk {t['scipy.special'] / s:.1f}")
            check("(1, 10), (1, 1000): torch 2 threads / smk >= 1", torch2 >= s,
                  f"{where}: torch2t/smk {torch2 / s:.2f}")
        if nbytes >= 16 * 1024 * 1024:
            copy = t["np.copyto (bound)"]
            need_out, need_alloc = (1.3, 1.6) if dtype == "float32" else (1.5, 1.8)
            if op != "logsumexp":
                value = t["softmaxkit out="] / copy
                check(f"{dtype} >= 16 MB: out= / copy <= {need_out}", value <= need_out,
                      f"{where}: out=/copy {value:.2f}")
            value = s / copy
            check(f"{dtype} >= 16 MB: allocating / copy <= {need_alloc}", value <= need_alloc,
                  f"{where}: alloc/copy {value:.2f}")
    for key, (met, total) in checks.items():
        lines.append(f"- {key}: met in {met} of {total} cases")
    lines.append("")
    if misses:
        lines.append("Missed:")
        lines.append("")
        lines.extend(f"- {m}" for m in misses)
        lines.append("")
    lines.append("### Memory (softmax, arrays of 16 MB and more, one call)")
    lines.append("")
    lines.append("| dtype | shape | implementation | tracemalloc peak | RSS peak above start |")
    lines.append("|---|---|---|---|---|")
    for (dtype, shape, name), (traced, rss) in memory.items():
        lines.append(
            f"| {dtype} | {shape} | {name} | {traced / 2**20:.2f} MiB | {rss / 2**20:.2f} MiB |"
        )
    lines.append("")
    text = "\n".join(lines) + "\n"
    write_atomic(os.path.join(HERE, "results_softmax.md"), text)
    plot(results)
    print(text)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, dtype in zip(axes, ("float32", "float64"), strict=True):
        points = [(int(np.prod(s)), s, a) for s, a in SHAPES if a == -1]
        points.sort()
        names = list(results[("softmax", dtype, points[0][1], -1)].keys())
        for name in names:
            sizes = [p[0] for p in points]
            per_element = [
                results[("softmax", dtype, p[1], -1)][name][0] / p[0] * 1e9 for p in points
            ]
            ax.loglog(sizes, per_element, marker="o", label=name)
        ax.set_title(f"softmax, {dtype}, last axis")
        ax.set_xlabel("elements")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time per element (ns)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = os.path.join(HERE, "results.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, os.path.join(HERE, "results.png"))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
