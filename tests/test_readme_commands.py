"""The ``$ softmax ...`` examples of the README and of ``docs/`` print what they show.

Every example of a shell block (a fenced block without a language) that is
followed by its output is run with the installed command, and its standard
output compared with the lines shown, so that the two cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import shell


def _shell_blocks(text):
    """The lines of each fenced block of ``text`` that has no language (the shell ones)."""
    blocks, block, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block, language = [], line[3:].strip()
            else:
                if not language:
                    blocks.append(block)
                block = None
        elif block is not None:
            block.append(line)
    return blocks


def _readme_examples(text):
    """``(command, expected output)`` of each ``$ ...`` line of the README's shell blocks
    that runs softmax and is followed by its output (the lines up to the next ``$`` line
    or the block's end, comment lines left out)."""
    examples = []
    for block in _shell_blocks(text):
        command, output = None, []
        for line in [*block, "$ "]:
            if line.startswith("$ "):
                if command is not None and output:
                    examples.append((command, "".join(f"{o}\n" for o in output)))
                command, output = line[2:], []
            elif command is not None and not line.lstrip().startswith("#"):
                output.append(line)
    return [(c, o) for c, o in examples if re.search(r"(^|\|\s*)softmax\b", c)]


def test_readme_examples_print_what_the_readme_shows(tmp_path):
    root = Path(__file__).resolve().parents[1]
    # The tutorial shows what a terminal draws, which a pipe does not print.
    documents = [root / "README.md"] + [
        path for path in sorted((root / "docs").glob("*.md")) if path.name != "tutorial.md"
    ]
    if not documents[0].is_file():
        pytest.skip("README.md is not next to the tests")
    examples = []
    for document in documents:
        examples += _readme_examples(document.read_text(encoding="utf-8"))
    assert len(examples) >= 8, examples
    for command, expected in examples:
        done = shell(command, cwd=tmp_path)
        assert (done.returncode, done.stderr) == (0, ""), command
        assert done.stdout == expected, command
