"""A device the machine lacks, as gpu-service meets it at start (the device choice itself is unit-tested,
with torch's availability functions patched, in tests/unit/test_platforms.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT


@pytest.mark.slow  # starts a process
def test_a_missing_device_is_a_one_line_configuration_error() -> None:
    """On this machine (no MPS), TORCH_DEVICE=mps stops gpu-service with one clear line and exit 2."""
    run = subprocess.run([sys.executable, "-m", "gpu_service", "--port", "1"],
                         env={**os.environ, "TORCH_DEVICE": "mps"}, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 2 and "TORCH_DEVICE='mps'" in run.stderr and "Traceback" not in run.stderr, run.stderr
