"""Without torch (nor the entmax package, which needs it), the NumPy tests of files
that also test tensors still run, and only the tensor tests skip (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _environment_without_torch(tmp_path):
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        textwrap.dedent(
            """
            import sys

            class _Blocked:
                # An import of these fails as where they are not installed.
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in ("torch", "entmax", "transformers"):
                        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                    return None

            sys.meta_path.insert(0, _Blocked())
            """
        )
    )
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), HERE]))


def _run_without_torch(tmp_path, *arguments):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *arguments],
        cwd=os.path.dirname(HERE),
        env=_environment_without_torch(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "test, numpy_tests",
    [
        ("tests/test_gradients.py", 3),
        ("tests/test_sparse.py::test_edge_rows", 3),
        ("tests/test_attention.py::test_errors", 1),
    ],
)
def test_numpy_tests_run_without_torch(tmp_path, test, numpy_tests):
    result = _run_without_torch(tmp_path, test)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{numpy_tests} passed" in output, output
    if test == "tests/test_gradients.py":
        assert "skipped" in output and "needs torch" in output, output


def test_the_blocker_does_block_torch(tmp_path):
    # The check above means something only if torch cannot be imported there.
    result = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env=_environment_without_torch(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'torch'" in result.stderr
