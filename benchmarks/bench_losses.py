"""Cross-entropy forward + backward: softmaxkit against the NumPy formula and PyTorch CPU.

Run as a script: ``python benchmarks/bench_losses.py``. It prints a markdown section and
writes it to ``benchmarks/results_losses.md``. All peers run in this one process, on the
same float32 inputs, medians over repeats; PyTorch is limited to 2 threads.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

import softmaxkit as smk
from softmaxkit import _kernels, losses

SHAPES = [(4096, 32000), (512, 128256)]
REPEATS = 5
RESULTS = Path(__file__).with_name("results_losses.md")


def numpy_formula(logits, target):
    """The textbook forward and backward: ``softmax - onehot``, over N rows."""
    n_rows = logits.shape[0]
    rows = np.arange(n_rows)
    shifted = logits - logits.max(axis=1, keepdims=True)
    grad = np.exp(shifted)
    total = grad.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(total[:, 0]) - shifted[rows, target])
    grad /= total
    grad[rows, target] -= 1.0
    grad /= n_rows
    return loss, grad


def softmaxkit_fused(logits, target):
    return smk.cross_entropy(logits, target, return_grad=True)


def softmaxkit_general_path(logits, target):
    """The same call with the fast path switched off: log_softmax, then the gradient."""
    original = losses._numpy_blocks._fast_path_applies
    losses._numpy_blocks._fast_path_applies = lambda *args, **kwargs: False
    try:
        return smk.cross_entropy(logits, target, return_grad=True)
    finally:
        losses._numpy_blocks._fast_path_applies = original


def make_torch_peer():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)

    def torch_cross_entropy(logits, target):
        inputs = torch.from_numpy(logits).requires_grad_()
        loss = torch.nn.functional.cross_entropy(inputs, torch.from_numpy(target))
        loss.backward()
        return loss.detach().numpy(), inputs.grad.numpy()

    return torch_cross_entropy


def peak_extra_memory(function, *args):
    """The peak extra memory of one call, seen by tracemalloc (NumPy reports its buffers).

    Its overhead is a few hundred allocations of large blocks, negligible next to the
    work; the call is not timed.
    """
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        result = function(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - baseline


def interleaved_medians(peers, *args):
    """Median seconds of each peer over ``REPEATS`` rounds; each round runs every peer once.

    On a machine shared with other jobs, the load changes within seconds: running the
    peers in turn lets each of them see the same load, so that their ratio means more
    than their absolute times.
    """
    times = {name: [] for name in peers}
    for _ in range(REPEATS):
        for name, function in peers.items():
            start = time.perf_counter()
            result = function(*args)
            times[name].append(time.perf_counter() - start)
            del result
    return {name: statistics.median(values) for name, values in times.items()}


def kernel_present() -> bool:
    return _kernels.kernel_available()


def main() -> str:
    rng = np.random.default_rng(0)
    torch_peer = make_torch_peer()
    lines = [
        "## Cross-entropy forward + backward (float32)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
        "(noisy); NumPy {np_version}, PyTorch {torch_version} on 2 threads; "
        f"median of {REPEATS} rounds, the peers in turn in each round; compiled softmaxkit "
        "kernel "
        f"{'present' if kernel_present() else 'absent (generic path)'}.".format(
            np_version=np.__version__,
            torch_version=_torch_version(),
        ),
        "",
        "| shape (N, V) | softmaxkit `cross_entropy(return_grad=True)` | NumPy formula | "
        "PyTorch `F.cross_entropy` + `backward` | PyTorch / softmaxkit | "
        "softmaxkit peak extra memory | NumPy formula peak extra memory | "
        "softmaxkit without its fast path (PyTorch / it) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        logits = (rng.standard_normal(shape, dtype=np.float32) * 4).astype(np.float32)
        target = rng.integers(0, shape[1], size=shape[0])
        gradient_bytes = logits.nbytes
        ours_memory = peak_extra_memory(softmaxkit_fused, logits, target)
        formula_memory = peak_extra_memory(numpy_formula, logits, target)
        peers = {
            "ours": softmaxkit_fused,
            "formula": numpy_formula,
            "general": softmaxkit_general_path,
        }
        if torch_peer is not None:
            peers["torch"] = torch_peer
        medians = interleaved_medians(peers, logits, target)
        ours, formula, general = medians["ours"], medians["formula"], medians["general"]
        if torch_peer is not None:
            torch_time = medians["torch"]
            torch_cell = f"{torch_time:.3f} s"
            ratio_cell = f"{torch_time / ours:.2f}x"
            general_cell = f"{general:.3f} s ({torch_time / general:.2f}x)"
        else:
            torch_cell = ratio_cell = "n/a"
            general_cell = f"{general:.3f} s"
        lines.append(
            f"| {shape[0]} x {shape[1]} | {ours:.3f} s | {formula:.3f} s | {torch_cell} | "
            f"{ratio_cell} | {ours_memory / 2**20:.0f} MiB "
            f"({ours_memory / gradient_bytes:.2f}x the gradient) | "
            f"{formula_memory / 2**20:.0f} MiB ({formula_memory / gradient_bytes:.2f}x) | "
            f"{general_cell} |"
        )
        del logits
    lines += [
        "",
        "A ratio above 1 means softmaxkit is faster than PyTorch. Peak extra memory is measured "
        "with tracemalloc during one call and includes the returned gradient (one array of the "
        "logits' size); the rest is the temporaries of one block of rows. The last column "
        "runs the same call with the fast path switched off (the general path: "
        "`log_softmax`, then the gradient from it), which label smoothing, `where` and "
        "per-row temperatures take.",
        "",
    ]
    return "\n".join(lines)


def _torch_version() -> str:
    try:
        import torch
    except ImportError:
        return "absent"
    return torch.__version__


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` completely or not at all."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


if __name__ == "__main__":
    section = main()
    print(section)
    write_whole(RESULTS, section)
    sys.exit(0)
