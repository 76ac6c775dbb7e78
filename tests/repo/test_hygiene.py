"""House rules that keep a checkout clean: a test run never rewrites tracked files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.reliability import DATA, REPORT, WRITE_ENV


@pytest.mark.slow  # starts a process
def test_a_test_run_that_records_reliability_rows_leaves_the_reports_alone(tmp_path: Path) -> None:
    """The reliability table is rewritten only by `make soak` (GPU_BRIDGE_WRITE_REPORTS=1)."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from tests.support.reliability import record\n\n"
        "def test_records():\n"
        "    record('fault', 'hygiene probe row', 'measured something')\n"
    )
    before = {path: path.read_bytes() for path in (REPORT, DATA) if path.exists()}
    env = {k: v for k, v in os.environ.items() if k != WRITE_ENV}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(probe)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hygiene probe row" in run.stdout  # the row was recorded (printed) ...
    after = {path: path.read_bytes() for path in (REPORT, DATA) if path.exists()}
    assert after == before  # ... and no tracked report changed
