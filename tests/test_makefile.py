"""The Makefile's test target: every stage runs, and a failure of any fails it."""

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


def _run_test_target(tmp_path, failing_stage, best):
    """``make test`` with a stand-in for pytest that logs its calls and fails on one."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(
        "import os, sys\n"
        f"log = open({str(log)!r}, 'a')\n"
        "stage = os.environ.get('SOFTMAXKIT_SIMD') or 'main'\n"
        "log.write(stage + '\\n')\n"
        f"sys.exit(1 if stage == {failing_stage!r} else 0)\n"
    )
    completed = subprocess.run(
        # -o: the venv and the installation are taken as up to date (nothing is built)
        ["make", "-s", "-o", "install", "-o", ".venv/.test-deps", "test",
         f"PYTEST={sys.executable} {fake}", f"SIMD_BEST={best}"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
    )
    calls = log.read_text().split() if log.exists() else []
    return completed, calls


STAGES = {
    "avx512": ["main", "avx2", "baseline"],
    "avx2": ["main", "baseline"],
    "baseline": ["main"],
}


@pytest.mark.parametrize("best", sorted(STAGES))
@pytest.mark.parametrize("failing_stage", ["main", "avx2", "baseline", None])
def test_every_stage_runs_and_a_failure_fails_the_target(tmp_path, failing_stage, best):
    completed, calls = _run_test_target(tmp_path, failing_stage, best)
    assert calls == STAGES[best]
    if failing_stage is None or failing_stage not in calls:
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert "FAILED" not in completed.stdout
    else:
        assert completed.returncode != 0
        assert f"the {failing_stage} stage FAILED" in completed.stdout
        for other in calls:
            if other != failing_stage:
                assert f"the {other} stage FAILED" not in completed.stdout


def test_two_failing_stages_are_both_reported(tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(
        "import os, sys\n"
        f"open({str(log)!r}, 'a').write('x\\n')\n"
        "sys.exit(0 if os.environ.get('SOFTMAXKIT_SIMD') == 'avx2' else 1)\n"
    )
    completed = subprocess.run(
        ["make", "-s", "-o", "install", "-o", ".venv/.test-deps", "test",
         f"PYTEST={sys.executable} {fake}", "SIMD_BEST=avx512"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0
    assert "the main stage FAILED" in completed.stdout
    assert "the baseline stage FAILED" in completed.stdout
    assert "the avx2 stage FAILED" not in completed.stdout
