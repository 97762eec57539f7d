"""Draw softmax, 1.5-entmax and sparsemax of the same logits to docs/sparse.png.

Usage: python examples/sparse_plot.py [output.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import softmaxkit as smk


def main(argv: list[str]) -> Path:
    target = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "docs" / "sparse.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    figure = smk.plot.sparse()
    # Written whole or not at all.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".png", delete=False) as f:
        figure.savefig(f, format="png", dpi=120)
    os.replace(f.name, target)
    return target


if __name__ == "__main__":
    print(main(sys.argv[1:]))
