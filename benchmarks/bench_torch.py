"""Benchmark: softmaxkit on PyTorch CPU tensors against torch's own functions (issue 16).

float32 and bfloat16, torch with 2 threads (softmaxkit follows torch.get_num_threads()),
forward and forward + backward, softmax / log_softmax / logsumexp against
``torch.softmax`` / ``F.log_softmax`` / ``torch.logsumexp``. The two sides alternate
sample by sample, so that the load of a shared machine falls on both alike; each time
is the fastest sample (on a loaded 2-core machine the medians measure the other jobs'
time slices, up to 100 times a call's own time), and the ratio is torch's time over
softmaxkit's (above 1: softmaxkit is faster). Also the cost of the dispatch on (1, 10),
and a small model compiled with ``torch.compile(fullgraph=True)`` calling
``softmaxkit.torch.LogSoftmax`` against the same model with ``torch.nn.LogSoftmax``;
``cross_entropy`` against ``F.cross_entropy``, forward and forward + backward.
Writes ``benchmarks/results_torch.md``.

Usage: ``python benchmarks/bench_torch.py [--quick]``.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [(1, 10), (64, 1000), (256, 32000), (32, 128256), (4096, 4096), (1_000_000, 10)]
OPS = ["softmax", "log_softmax", "logsumexp"]
THREADS = 2
# cross_entropy: the plain call on every shape from (64, 1000) up, each option on two.
LOSS_SHAPES = SHAPES[1:]
LOSS_OPTION_SHAPES = [(256, 32000), (4096, 4096)]
LOSS_OPTIONS = {
    "plain": {},
    "weight, ignore_index": {"weight": True, "ignore_index": 0},
    "label_smoothing=0.1": {"label_smoothing": 0.1},
    "z_loss=1e-4": {"z_loss": 1e-4},
    "softcap=30": {"softcap": 30.0},
}


def paired(first, second, budget, min_samples=5, max_samples=400):
    """The fastest times (seconds) of ``first()`` and ``second()``, sampled alternately;
    each sample repeats the call enough times to last about 0.2 ms."""
    first()
    second()
    start = time.perf_counter()
    first()
    single = time.perf_counter() - start
    repeat = max(1, int(2e-4 / max(single, 1e-7)))
    a, b = [], []
    begin = time.perf_counter()
    while len(a) < max_samples:
        for fn, times in ((first, a), (second, b)):
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            times.append((time.perf_counter() - t0) / repeat)
        if len(a) >= min_samples and time.perf_counter() - begin > budget:
            break
    return min(a), min(b), len(a)


def functions(torch, smk):
    import torch.nn.functional as F

    theirs = {
        "softmax": lambda v: torch.softmax(v, -1),
        "log_softmax": lambda v: F.log_softmax(v, -1),
        "logsumexp": lambda v: torch.logsumexp(v, -1),
    }
    ours = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}
    return theirs, ours


def loss_functions(torch, smk, options, n_classes, dtype):
    """(torch's cross-entropy, softmaxkit's) with ``options``: torch's written out with
    its own operations where it has no such option (z_loss, softcap)."""
    import torch.nn.functional as F

    options = dict(options)
    if options.get("weight") is True:
        options["weight"] = torch.linspace(0.5, 2.0, n_classes).to(dtype)
    z_loss = options.pop("z_loss", 0.0)
    softcap = options.pop("softcap", None)

    def theirs(x, target):
        if softcap is not None:
            x = softcap * torch.tanh(x / softcap)
        loss = F.cross_entropy(x, target, **options)
        if z_loss:
            loss = loss + z_loss * torch.logsumexp(x, -1).square().mean()
        return loss

    extra = {"z_loss": z_loss} if z_loss else {}
    if softcap is not None:
        extra["softcap"] = softcap

    def ours(x, target):
        return smk.cross_entropy(x, target, **options, **extra)

    return theirs, ours


def cross_entropy_rows(torch, smk, budget):
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for name, options in LOSS_OPTIONS.items():
            shapes = LOSS_SHAPES if name == "plain" else LOSS_OPTION_SHAPES
            for shape in shapes:
                generator = torch.Generator().manual_seed(0)
                x = (torch.randn(*shape, generator=generator) * 3).to(dtype)
                target = torch.randint(0, shape[1], shape[:1], generator=generator)
                xg = x.clone().requires_grad_()
                theirs, ours = loss_functions(torch, smk, options, shape[1], dtype)
                forward = paired(
                    lambda f=theirs, x=x, t=target: f(x, t),
                    lambda f=ours, x=x, t=target: f(x, t),
                    budget,
                )
                both = paired(
                    lambda f=theirs, xg=xg, t=target: f(xg, t).backward(),
                    lambda f=ours, xg=xg, t=target: f(xg, t).backward(),
                    budget,
                )
                rows.append((str(dtype).replace("torch.", ""), shape, name, forward, both))
                print(rows[-1], flush=True)
    return rows


def forward_backward(function, x, g):
    def run():
        function(x).backward(g)

    return run


def overhead(torch, smk):
    """Per-call costs on (1, 10) float32, in microseconds (medians)."""
    from softmaxkit import _kernels

    x = torch.randn(1, 10)
    a = x.numpy()
    costs = {}

    def empty():
        return None

    parts = {
        "an empty Python call": empty,
        "torch.softmax": lambda: torch.softmax(x, -1),
        "softmaxkit.softmax on the tensor": lambda: smk.softmax(x),
        "softmaxkit.softmax on its NumPy view": lambda: smk.softmax(a),
        "the extension's entry on the NumPy view": lambda: _kernels.fast_normalize(
            0, a, -1, 1.0, None, None, None
        ),
        "Tensor.numpy()": lambda: x.numpy(),
        "torch.from_numpy": lambda: torch.from_numpy(a),
    }
    for name, fn in parts.items():
        costs[name] = paired(fn, empty, 0.3)[0] * 1e6
    return costs


def main(quick=False):
    import torch

    import softmaxkit as smk

    torch.set_num_threads(THREADS)
    theirs, ours = functions(torch, smk)
    rows = []
    budget = 0.2 if quick else 1.0
    for dtype in (torch.float32, torch.bfloat16):
        for shape in SHAPES:
            generator = torch.Generator().manual_seed(0)
            x = (torch.randn(*shape, generator=generator) * 3).to(dtype)
            xg = x.clone().requires_grad_()
            for op in OPS:
                g = torch.randn(*(shape if op != "logsumexp" else shape[:-1])).to(dtype)
                forward = paired(
                    lambda op=op, x=x: theirs[op](x), lambda op=op, x=x: ours[op](x), budget
                )
                both = paired(
                    forward_backward(theirs[op], xg, g), forward_backward(ours[op], xg, g), budget
                )
                rows.append((str(dtype).replace("torch.", ""), shape, op, forward, both))
                print(rows[-1], flush=True)
    losses = cross_entropy_rows(torch, smk, budget)
    costs = overhead(torch, smk)
    compiled = None if quick else compiled_models(torch, budget)
    write_report(rows, losses, costs, compiled, torch, smk)


def compiled_models(torch, budget):
    """(torch's time, softmaxkit's time, samples): forward + backward of a compiled
    Linear(512, 8192) + LogSoftmax head on a batch of 64, float32."""
    import softmaxkit.torch as smt

    def head(last):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(512, 8192), last)

    ours = torch.compile(head(smt.LogSoftmax(dim=-1)), fullgraph=True)
    theirs = torch.compile(head(torch.nn.LogSoftmax(dim=-1)), fullgraph=True)
    x = torch.randn(64, 512)
    g = torch.randn(64, 8192)
    return paired(lambda: theirs(x).backward(g), lambda: ours(x).backward(g), budget)


def _time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def write_report(rows, losses, costs, compiled, torch, smk):
    from softmaxkit import _kernels

    lines = [
        "## PyTorch tensors (`benchmarks/bench_torch.py`)",
        "",
        f"torch {torch.__version__} with {THREADS} threads (`torch.set_num_threads`); "
        f"softmaxkit on the same tensors, in its compiled kernel (`{_kernels.simd()}`), "
        "with torch's thread count. The fastest of samples taken alternately (torch, "
        "softmaxkit); ratio = torch's time / softmaxkit's (above 1: softmaxkit faster). "
        "forward + backward: `f(x).backward(g)` on a tensor that requires grad. The "
        "machine is shared and noisy: compare ratios within this run.",
        "",
        "| dtype | shape | function | torch fwd | smk fwd | ratio fwd | torch fwd+bwd "
        "| smk fwd+bwd | ratio fwd+bwd |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, shape, op, forward, both in rows:
        lines.append(
            f"| {dtype} | {shape} | {op} | {_time(forward[0])} | {_time(forward[1])} | "
            f"{forward[0] / forward[1]:.2f} | {_time(both[0])} | {_time(both[1])} | "
            f"{both[0] / both[1]:.2f} |"
        )
    lines += [
        "",
        "`cross_entropy` with class-index targets (mean over the batch) against "
        "`F.cross_entropy` (z_loss and softcap written out in torch operations on its "
        "side); forward + backward: `loss(x, target).backward()`.",
        "",
        "| dtype | shape | options | torch fwd | smk fwd | ratio fwd | torch fwd+bwd "
        "| smk fwd+bwd | ratio fwd+bwd |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, shape, name, forward, both in losses:
        lines.append(
            f"| {dtype} | {shape} | {name} | {_time(forward[0])} | {_time(forward[1])} | "
            f"{forward[0] / forward[1]:.2f} | {_time(both[0])} | {_time(both[1])} | "
            f"{both[0] / both[1]:.2f} |"
        )
    empty = costs["an empty Python call"]
    lines += [
        "",
        "Per-call costs on (1, 10) float32 (fastest samples, the timing loop's own cost, "
        f"{empty:.2f} µs for an empty call, included in each):",
        "",
        "| call | time |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.2f} µs |" for name, value in costs.items()]
    tensor = costs["softmaxkit.softmax on the tensor"]
    entry = costs["the extension's entry on the NumPy view"]
    lines += [
        "",
        f"The dispatch of a tensor (everything but the extension's own entry) costs "
        f"about {tensor - entry:.1f} µs a call, of which the tensor-to-NumPy view and "
        f"back (`Tensor.numpy()` and `torch.from_numpy`) are about "
        f"{costs['Tensor.numpy()'] + costs['torch.from_numpy'] - 2 * empty:.1f} µs.",
        "",
    ]
    if compiled is not None:
        lines += [
            "A compiled model (`torch.compile(fullgraph=True)`, no graph break): "
            "Linear(512, 8192) then LogSoftmax, batch 64, float32, forward + backward: "
            f"with `torch.nn.LogSoftmax` {_time(compiled[0])}, with "
            f"`softmaxkit.torch.LogSoftmax` {_time(compiled[1])}: ratio "
            f"{compiled[0] / compiled[1]:.2f}.",
            "",
        ]
    text = "\n".join(lines)
    path = os.path.join(HERE, "results_torch.md")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(text)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
