"""The 10-armed testbed with softmax action selection, as a script.

The experiment lives in the package (``softmaxkit._bandit``), so that the installed
``softmax bandit`` command runs it too; this script writes ``examples/bandit.png``.
``main(["--runs", "200", "--no-plot"])`` runs it from Python and returns the results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from softmaxkit import _bandit
from softmaxkit.cli import write_atomically


def main(argv=None):
    """Run the testbed, print the final averages and write the plot; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", default=str(Path(__file__).with_name("bandit.png")), help="plot file"
    )
    parser.add_argument("--no-plot", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.steps < 1:
        parser.error("--runs and --steps must be >= 1")
    start = time.perf_counter()
    results = _bandit.run_testbed(runs=args.runs, steps=args.steps, seed=args.seed)
    print(f"{args.runs} runs x {args.steps} steps in {time.perf_counter() - start:.1f} s")
    print(_bandit.summary(results), end="")
    if not args.no_plot:
        figure = _bandit.figure(results, runs=args.runs)
        write_atomically(args.output, lambda file: figure.savefig(file, format="png"))
        print(f"plot written to {args.output}")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
