"""JAX under ``jit``: softmaxkit against ``jax.nn``, forward and ``grad``.

Run as a script (``python benchmarks/bench_jax.py``); it prints a markdown section and
writes it to ``benchmarks/results_jax.md``. float32 on the CPU, softmaxkit's kernel
threads as set (2 here), XLA's own threads as it chooses. Each cell is the best of
interleaved rounds (softmaxkit and jax.nn alternate, so that both see the same load);
the ratio is softmaxkit's time over jax.nn's (below 1: softmaxkit is faster). The
gradient is that of ``sum(f(x) * w)``. Then ``cross_entropy`` against the same loss
written with ``jax.nn``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results_jax.md")
SHAPES = [(64, 1000), (256, 32000), (4096, 4096)]
ROUNDS = 7


def _best(functions, argument):
    """The best time (ms) of each function over interleaved rounds."""
    for function in functions:
        function(argument).block_until_ready()  # compile, warm
    best = [float("inf")] * len(functions)
    for _ in range(ROUNDS):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function(argument).block_until_ready()
            best[i] = min(best[i], time.perf_counter() - start)
    return [b * 1e3 for b in best]


def main() -> int:
    import jax
    import jax.numpy as jnp

    import softmaxkit as smk
    from softmaxkit import _jax

    pairs = [
        ("softmax", smk.softmax, jax.nn.softmax),
        ("log_softmax", smk.log_softmax, jax.nn.log_softmax),
        ("logsumexp", smk.logsumexp, lambda t: jax.nn.logsumexp(t, axis=-1)),
    ]
    lines = [
        "## JAX under jit (`benchmarks/bench_jax.py`)",
        "",
        f"jax {jax.__version__}, float32, CPU; softmaxkit threads {smk.get_num_threads()}; "
        f"the kernel as an XLA foreign function: {_jax.ffi_available()}. Times in ms (best of "
        f"{ROUNDS} interleaved rounds); ratio = softmaxkit / jax.nn.",
        "",
        "| function | shape | fwd smk | fwd jax.nn | fwd ratio "
        "| grad smk | grad jax.nn | grad ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for shape in SHAPES:
        rng = np.random.default_rng(0)
        x = jnp.asarray((rng.standard_normal(shape) * 4).astype(np.float32))
        w = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
        for name, ours, theirs in pairs:
            weights = w if name != "logsumexp" else w[:, 0]
            forward = [jax.jit(ours), jax.jit(theirs)]
            backward = [
                jax.jit(jax.grad(lambda t, f=f, v=weights: jnp.sum(f(t) * v)))
                for f in (ours, theirs)
            ]
            f_ours, f_theirs = _best(forward, x)
            g_ours, g_theirs = _best(backward, x)
            lines.append(
                f"| {name} | {shape[0]} x {shape[1]} | {f_ours:.3f} | {f_theirs:.3f} | "
                f"{f_ours / f_theirs:.2f} | {g_ours:.3f} | {g_theirs:.3f} | "
                f"{g_ours / g_theirs:.2f} |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        "`cross_entropy` with class-index targets (mean) against the same loss written with "
        "`jax.nn.log_softmax` and `take_along_axis`; grad: `jax.grad` of the loss.",
        "",
        "| shape | fwd smk | fwd jax.nn | fwd ratio | grad smk | grad jax.nn | grad ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def reference_loss(t, target):
        picked = jnp.take_along_axis(jax.nn.log_softmax(t), target[:, None], 1)
        return -jnp.mean(picked)

    for shape in SHAPES:
        rng = np.random.default_rng(0)
        x = jnp.asarray((rng.standard_normal(shape) * 4).astype(np.float32))
        target = jnp.asarray(rng.integers(0, shape[1], shape[0]))
        pair = [
            lambda t, target=target: smk.cross_entropy(t, target),
            lambda t, target=target: reference_loss(t, target),
        ]
        f_ours, f_theirs = _best([jax.jit(f) for f in pair], x)
        g_ours, g_theirs = _best([jax.jit(jax.grad(f)) for f in pair], x)
        lines.append(
            f"| {shape[0]} x {shape[1]} | {f_ours:.3f} | {f_theirs:.3f} | "
            f"{f_ours / f_theirs:.2f} | {g_ours:.3f} | {g_theirs:.3f} | {g_ours / g_theirs:.2f} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    with open(RESULTS + ".tmp", "w") as f:
        f.write(text)
    os.replace(RESULTS + ".tmp", RESULTS)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
