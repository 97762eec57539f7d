"""``python -m softmaxkit.demo``: the classic softmax tutorial examples, through softmaxkit.

Prints each example's probabilities, log-probabilities and logsumexp next to the
exact values (computed in 60-digit arithmetic, shipped in ``softmaxkit/data``), a
2-D batch along both axes, a temperature sweep, and the overflow case where the
textbook formula ``exp(x) / sum(exp(x))`` fails.
"""

from __future__ import annotations

import json
import warnings
from importlib import resources

import numpy as np

from . import log_softmax, logsumexp, softmax


def load_seed_examples() -> dict:
    """The tutorial vectors and their exact results."""
    text = resources.files("softmaxkit").joinpath("data/seed_examples.json").read_text()
    return json.loads(text)


def _ulps(computed, exact) -> float:
    computed = np.asarray(computed, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    return float(np.max(np.abs(computed - exact) / np.spacing(np.abs(exact))))


def _fmt(values) -> str:
    return np.array2string(np.asarray(values), precision=6, separator=", ", suppress_small=False)


def main() -> None:
    examples = load_seed_examples()
    np.set_printoptions(linewidth=100)
    print("softmaxkit demo: the classic tutorial examples (float64)")
    print("max error against the 60-digit reference, in ulp, in brackets\n")
    for name, case in examples["vectors"].items():
        if name == "batch_2d":
            continue
        scores = case["input"]
        probabilities = softmax(scores)
        log_probabilities = log_softmax(scores)
        total = logsumexp(scores)
        print(f"{name}: x = {scores}")
        error = _ulps(probabilities, case["softmax"])
        print(f"  softmax     {_fmt(probabilities)}  [{error:.0f} ulp]")
        print(
            f"  log_softmax {_fmt(log_probabilities)}  "
            f"[{_ulps(log_probabilities, case['log_softmax']):.0f} ulp]"
        )
        print(f"  logsumexp   {float(total):.6f}  [{_ulps(total, case['logsumexp']):.0f} ulp]")

    batch = examples["vectors"]["batch_2d"]
    print(f"\nbatch_2d: x = {batch['input']}")
    for axis in (-1, 0):
        probabilities = softmax(batch["input"], axis=axis)
        exact = [row["softmax"] for row in batch[f"axis_{axis}"]]
        exact = np.asarray(exact) if axis == -1 else np.asarray(exact).T
        print(f"  softmax(x, axis={axis}) [{_ulps(probabilities, exact):.0f} ulp]")
        print("   ", _fmt(probabilities).replace("\n", "\n    "))

    sweep = examples["temperature_sweep"]
    print(f"\ntemperature sweep: x = {sweep['input']}")
    for temperature, exact in zip(sweep["temperatures"], sweep["softmax"]):
        probabilities = softmax(sweep["input"], temperature=temperature)
        print(
            f"  T = {temperature:<4} {_fmt(probabilities)}  [{_ulps(probabilities, exact):.0f} ulp]"
        )
    print(
        "  (the reference divides by the decimal 0.1, which float64 cannot hold; against\n"
        "   the float64 0.1 that is actually passed, the T = 0.1 row is within 1 ulp)"
    )
    print(f"  T = 0    {_fmt(softmax(sweep['input'], temperature=0.0))}  (greedy limit)")
    print(f"  T = inf  {_fmt(softmax(sweep['input'], temperature=float('inf')))}  (uniform limit)")

    overflow = examples["vectors"]["overflow_naive"]["input"]
    scores = np.asarray(overflow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive = np.exp(scores) / np.sum(np.exp(scores))
    print(f"\noverflow: x = {overflow}")
    print(f"  naive exp(x)/sum(exp(x)) {_fmt(naive)}")
    print(f"  softmaxkit.softmax(x)    {_fmt(softmax(scores))}")

    edges = {
        "all -inf": [-np.inf, -np.inf],
        "masked out": [1.0, 2.0],
        "two +inf": [np.inf, 0.0, np.inf],
        "int8 [-100, 100]": np.array([-100, 100], dtype=np.int8),
        "float16 zeros x 128256": np.zeros(128256, dtype=np.float16),
    }
    print("\nedges:")
    for label, scores in edges.items():
        where = np.array([False, False]) if label == "masked out" else None
        probabilities = softmax(scores, where=where)
        shown = probabilities[:3] if np.size(probabilities) > 3 else probabilities
        print(f"  {label:<24} softmax {_fmt(shown)}{' ...' if np.size(probabilities) > 3 else ''}")


if __name__ == "__main__":
    main()
