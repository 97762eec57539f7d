"""Sparsemax and entmax: softmaxkit against the `entmax` package (PyTorch, 2 threads).

Run as a script: prints a markdown section and writes it to benchmarks/results_sparse.md.
Shapes (256, 32000) and (32, 128256), float32, forward and forward+backward, medians over
repeats; every peer is timed in the same process, interleaved, on the same inputs.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import softmaxkit as smk

SHAPES = [(256, 32000), (32, 128256)]
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
# The package's bisection takes seconds per call: timed once, without warm-up.
SLOW_PEER_REPEATS = 1
DEVICE = os.environ.get("BENCH_DEVICE", "cpu")


def _sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _peers():
    import entmax

    return {
        "sparsemax": [
            ("softmaxkit", smk.sparsemax),
            ("entmax", lambda x: entmax.sparsemax(x, dim=-1)),
            ("entmax k=128", lambda x: entmax.sparsemax(x, dim=-1, k=128)),
        ],
        "entmax15": [
            ("softmaxkit", smk.entmax15),
            ("entmax", lambda x: entmax.entmax15(x, dim=-1)),
            ("entmax k=128", lambda x: entmax.entmax15(x, dim=-1, k=128)),
        ],
        "entmax alpha=1.5, bisection": [
            ("softmaxkit", lambda x: smk.entmax(x, alpha=1.5)),
            ("entmax", lambda x: entmax.entmax_bisect(x, alpha=1.5, dim=-1)),
        ],
    }


def _time(function, x, backward, repeats=None):
    def once():
        if backward:
            leaf = x.detach().requires_grad_(True)
            out = function(leaf)
            out.backward(cotangent)
        else:
            with torch.no_grad():
                function(x)

    cotangent = torch.randn_like(x)
    if repeats is None:
        repeats = REPEATS
        once()  # warm-up
    samples = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        once()
        _sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _repeats(mapping, name):
    if "bisection" in mapping and name == "entmax":
        return SLOW_PEER_REPEATS
    return None


def _where() -> str:
    if DEVICE.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"CPU, {torch.get_num_threads()} threads"


def main() -> str:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    lines = [
        "## Sparse mappings: softmaxkit vs the `entmax` package",
        "",
        f"PyTorch {torch.__version__}, {_where()}, float32, logits "
        f"`torch.randn(shape) * 2`, median of {REPEATS} runs, {platform.machine()} "
        f"({os.cpu_count()} cores, shared with other jobs: expect noise). "
        "`entmax` is the reference package with its default full sort; "
        "`entmax k=128` is its own optional partial sort, shown for reference. "
        "The package's bisection is timed once, without warm-up (it takes seconds). "
        "Ratio = entmax (default) time / softmaxkit time (> 1: softmaxkit faster).",
        "",
        "| mapping | shape | pass | softmaxkit ms | entmax ms | entmax k=128 ms | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for mapping, peers in _peers().items():
        for shape in SHAPES:
            x = torch.randn(shape, device=DEVICE) * 2
            for backward in (False, True):
                times = {
                    name: _time(fn, x, backward, repeats=_repeats(mapping, name)) * 1e3
                    for name, fn in peers
                }
                ours = times["softmaxkit"]
                ref = times["entmax"]
                k_time = times.get("entmax k=128")
                k_text = f"{k_time:.1f}" if k_time is not None else "-"
                lines.append(
                    f"| {mapping} | {shape[0]}x{shape[1]} | "
                    f"{'fwd+bwd' if backward else 'fwd'} | {ours:.1f} | {ref:.1f} | {k_text} | "
                    f"{ref / ours:.2f}x |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    target = Path(os.environ.get("BENCH_OUTPUT", Path(__file__).with_name("results_sparse.md")))
    # Written whole or not at all.
    with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, target)
    return text


if __name__ == "__main__":
    print(main())
