"""Benchmark: softmaxkit.sample against the usual PyTorch sampling recipe.

Logits of shape (64, 128256) in float32 (a batch of 64 rows over a Llama-3-sized
vocabulary). The PyTorch recipe is the one found in most generation loops: sort the
whole row, cut at top-k, softmax, cumulative sum, mask beyond top-p, softmax again,
``torch.multinomial``. PyTorch runs on 2 threads. Greedy and plain temperature
sampling are compared with one softmax pass over the same logits: softmaxkit's own
(the compiled kernel, writing into a preallocated ``out=``) and ``torch.softmax`` in
float32; those timings are taken in interleaved rounds (each function once per
round), so that a change of load on the shared machine hits them alike.

Run ``python benchmarks/bench_sampling.py``; it prints a markdown section and
writes it to ``benchmarks/results_sampling.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import softmaxkit as smk

ROWS, VOCABULARY = 64, 128_256
TOP_K, TOP_P, TEMPERATURE = 50, 0.9, 0.8
REPEATS = 7


def median_seconds(function, repeats=REPEATS):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


INTERLEAVED_ROUNDS = 31


def interleaved_medians(functions, repeats=INTERLEAVED_ROUNDS):
    """Median seconds of each function, timed in rounds that call each one once.

    The order within a round is shuffled, so that no function always follows the same one.
    """
    for function in functions.values():
        function()  # warm-up
    times = {name: [] for name in functions}
    shuffle = np.random.default_rng(1).permutation
    names = list(functions)
    for _ in range(repeats):
        for index in shuffle(len(names)):
            name, function = names[index], functions[names[index]]
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def torch_top_k_top_p(torch, logits, generator):
    """Sort, top-k cut, softmax, cumsum, top-p mask, softmax, multinomial."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
    sorted_logits[:, TOP_K:] = -float("inf")
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= TOP_P, -float("inf"))
    choice = torch.multinomial(torch.softmax(sorted_logits, dim=-1), 1, generator=generator)
    return sorted_indices.gather(-1, choice)[:, 0]


def torch_top_p(torch, logits, generator):
    """The same recipe without the top-k cut."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= TOP_P, -float("inf"))
    choice = torch.multinomial(torch.softmax(sorted_logits, dim=-1), 1, generator=generator)
    return sorted_indices.gather(-1, choice)[:, 0]


def torch_temperature(torch, logits, generator):
    probs = torch.softmax(logits / TEMPERATURE, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def run():
    import torch

    torch.set_num_threads(2)
    logits = np.random.default_rng(0).normal(size=(ROWS, VOCABULARY)).astype(np.float32) * 3
    logits_torch = torch.from_numpy(logits)
    generator = torch.Generator().manual_seed(0)

    # The two agree on what may be drawn.
    allowed = np.isfinite(smk.filter_logits(logits, top_k=TOP_K, top_p=TOP_P))
    ours = smk.sample(logits, top_k=TOP_K, top_p=TOP_P, rng=0)
    theirs = torch_top_k_top_p(torch, logits_torch, generator).numpy()
    assert np.take_along_axis(allowed, ours[:, None], axis=1).all()
    assert np.take_along_axis(allowed, theirs[:, None], axis=1).all()

    timings = {
        "ours_top": median_seconds(lambda: smk.sample(logits, top_k=TOP_K, top_p=TOP_P, rng=0)),
        "ours_top_torch": median_seconds(
            lambda: smk.sample(logits_torch, top_k=TOP_K, top_p=TOP_P, rng=generator)
        ),
        "torch_top": median_seconds(lambda: torch_top_k_top_p(torch, logits_torch, generator)),
        "ours_top_p": median_seconds(lambda: smk.sample(logits, top_p=TOP_P, rng=0), repeats=3),
        "torch_top_p": median_seconds(
            lambda: torch_top_p(torch, logits_torch, generator), repeats=3
        ),
        "torch_temperature": median_seconds(
            lambda: torch_temperature(torch, logits_torch, generator)
        ),
    }
    buffer = np.empty_like(logits)
    timings.update(
        interleaved_medians(
            {
                "ours_greedy": lambda: smk.sample(logits, temperature=0, rng=0),
                "ours_temperature": lambda: smk.sample(logits, temperature=TEMPERATURE, rng=0),
                "ours_plain": lambda: smk.sample(logits, rng=0),
                "smk_softmax": lambda: smk.softmax(logits, out=buffer),
                "smk_softmax_temperature": lambda: smk.softmax(
                    logits, temperature=TEMPERATURE, out=buffer
                ),
                "torch_softmax": lambda: torch.softmax(logits_torch, dim=-1),
                "torch_argmax": lambda: torch.argmax(logits_torch, dim=-1),
            }
        )
    )
    return timings, torch.__version__


def markdown(timings, torch_version):
    ms = {key: 1e3 * value for key, value in timings.items()}

    def ratio(slow, fast):
        return f"{ms[slow] / ms[fast]:.2f}x"

    kernel = "SIMD: " + str(smk._kernels.simd()) if smk._kernels.kernel_available() else "NOT built"

    lines = [
        "## Sampling (`softmaxkit.sample`)",
        "",
        f"Logits ({ROWS}, {VOCABULARY}) float32, one draw per row; medians of {REPEATS} runs "
        f"in one process. NumPy {np.__version__}, PyTorch {torch_version} on 2 threads, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores. "
        "The machine is shared and noisy (load average "
        f"{os.getloadavg()[0]:.1f} at the end of this run): compare the rows of one run, "
        "not runs.",
        "",
        "| case | softmaxkit | peer | peer / softmaxkit |",
        "|---|---:|---:|---:|",
        f"| top_k={TOP_K}, top_p={TOP_P}, NumPy input | {ms['ours_top']:.1f} ms "
        f"| PyTorch recipe (sort, cumsum, mask, softmax, multinomial) {ms['torch_top']:.1f} ms "
        f"| **{ratio('torch_top', 'ours_top')}** |",
        f"| top_k={TOP_K}, top_p={TOP_P}, PyTorch input | {ms['ours_top_torch']:.1f} ms "
        f"| same recipe {ms['torch_top']:.1f} ms | {ratio('torch_top', 'ours_top_torch')} |",
        f"| top_p={TOP_P} alone (about 5,000 entries kept per row) | {ms['ours_top_p']:.1f} ms "
        f"| same recipe without top-k {ms['torch_top_p']:.1f} ms "
        f"| {ratio('torch_top_p', 'ours_top_p')} |",
        f"| temperature={TEMPERATURE} (no filter) | {ms['ours_temperature']:.1f} ms "
        f"| `torch.multinomial(torch.softmax(x / T))` {ms['torch_temperature']:.1f} ms "
        f"| {ratio('torch_temperature', 'ours_temperature')} |",
        f"| greedy (temperature=0) | {ms['ours_greedy']:.1f} ms "
        f"| `torch.argmax` {ms['torch_argmax']:.1f} ms | {ratio('torch_argmax', 'ours_greedy')} |",
        "",
        "Against one softmax pass over the same logits (target: sampling within 2x). "
        f"These rows are medians of {INTERLEAVED_ROUNDS} interleaved rounds (each function "
        "once per round, in shuffled order):",
        "",
        f"| | softmaxkit.softmax (compiled kernel, `out=`; {kernel}) "
        "| torch.softmax (float32, 2 threads) |",
        "|---|---:|---:|",
        f"| one softmax pass | {ms['smk_softmax']:.1f} ms | {ms['torch_softmax']:.1f} ms |",
        f"| greedy sample / softmax | {ratio('ours_greedy', 'smk_softmax')} "
        f"| **{ratio('ours_greedy', 'torch_softmax')}** |",
        f"| temperature={TEMPERATURE} sample / softmax "
        f"| {ratio('ours_temperature', 'smk_softmax')} "
        f"| **{ratio('ours_temperature', 'torch_softmax')}** |",
        f"| temperature=1 sample / softmax | {ratio('ours_plain', 'smk_softmax')} "
        f"| {ratio('ours_plain', 'torch_softmax')} |",
        "",
        f"For reference, in the same rounds: `softmaxkit.softmax(x, temperature={TEMPERATURE}, "
        f"out=)` took {ms['smk_softmax_temperature']:.1f} ms, the temperature sample "
        f"{ms['ours_temperature']:.1f} ms, the temperature=1 sample {ms['ours_plain']:.1f} ms, "
        f"greedy {ms['ours_greedy']:.1f} ms.",
        "",
        "softmaxkit avoids the full sort: top-k is a partial selection (`np.argpartition`, "
        "`torch.topk`), and top-p then works on the 50 candidates; top-p alone tries the "
        "1,024 then 16,384 most likely entries before a full sort. Sampling NumPy logits "
        "without a filter, on rows of this width, is one pass of the compiled kernel that "
        "gives each row's maximum and the float64 sums of exp over blocks (of 512 entries "
        "for one draw per row here; the probabilities are not written), a float64 "
        "cumulative sum of the block sums, and the float64 exp and cumulative sum of the "
        "chosen block only: less work than a softmax pass, which also writes and scales "
        "its output. Greedy sampling is one `argmax`.",
        "",
    ]
    return "\n".join(lines)


def write_whole(path: Path, text: str):
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".md")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def main(argv=None):
    timings, torch_version = run()
    text = markdown(timings, torch_version)
    print(text)
    write_whole(Path(__file__).with_name("results_sampling.md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
