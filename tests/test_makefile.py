"""The Makefile's test target: both stages run, and a failure of either fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (CHECKOUT / "Makefile").is_file(),
    reason="needs make and the checkout's Makefile",
)


def _run_test_target(tmp_path, failing_stage):
    """``make test`` with a stand-in for pytest that logs its calls and fails on one."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(
        "import os, sys\n"
        f"log = open({str(log)!r}, 'a')\n"
        "stage = 'baseline' if os.environ.get('SOFTMAXKIT_SIMD') == 'baseline' else 'main'\n"
        "log.write(stage + '\\n')\n"
        f"sys.exit(1 if stage == {failing_stage!r} else 0)\n"
    )
    completed = subprocess.run(
        # -o: the venv and the installation are taken as up to date (nothing is built)
        ["make", "-s", "-o", "install", "-o", ".venv/.test-deps", "test",
         f"PYTEST={sys.executable} {fake}"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
    )
    calls = log.read_text().split() if log.exists() else []
    return completed, calls


@pytest.mark.parametrize("failing_stage", ["main", "baseline", None])
def test_both_stages_run_and_a_failure_fails_the_target(tmp_path, failing_stage):
    completed, calls = _run_test_target(tmp_path, failing_stage)
    assert calls == ["main", "baseline"]
    if failing_stage is None:
        assert completed.returncode == 0, completed.stdout + completed.stderr
    else:
        assert completed.returncode != 0
        assert f"the {failing_stage} stage FAILED" in completed.stdout
