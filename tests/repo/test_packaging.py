"""Packaging: the bridge's wheel carries the bridge and the wire protocol and no service code; the
service's wheel carries the service; and no bridge module loads the service or torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "mcp_bridge", "gpu_protocol", "gpu_service", "service"]


def top_level(wheel: Path) -> set[str]:
    """The top-level packages in a wheel (its .dist-info left out)."""
    names = zipfile.ZipFile(wheel).namelist()
    return {n.split("/")[0] for n in names if "/" in n and not n.split("/")[0].endswith(".dist-info")}


@pytest.mark.slow
def test_two_wheels_bridge_without_service_code(tmp_path: Path) -> None:
    # Built from a copy: a build writes build/ and *.egg-info next to the sources, and a test
    # must not touch the work tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist),
         ".", "./service"],
        cwd=src, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (bridge,) = dist.glob("openclaw_gpu_bridge-*.whl")
    (service,) = dist.glob("openclaw_gpu_service-*.whl")
    assert top_level(bridge) == {"mcp_bridge", "gpu_protocol"}
    assert top_level(service) == {"gpu_service"}
    bridge_files = zipfile.ZipFile(bridge).namelist()
    assert "gpu_protocol/codec.py" in bridge_files and "mcp_bridge/pool/pool.py" in bridge_files
    assert not any(name.startswith("gpu_service/") for name in bridge_files)
    entry_points = zipfile.ZipFile(service).read(
        next(n for n in zipfile.ZipFile(service).namelist() if n.endswith("entry_points.txt"))).decode()
    assert "gpu-service = gpu_service.cli:main" in entry_points


@pytest.mark.slow  # starts a process
def test_no_bridge_module_loads_the_service_or_torch() -> None:
    code = (
        "import pkgutil, importlib, sys, mcp_bridge\n"
        "names = [m.name for m in pkgutil.walk_packages(mcp_bridge.__path__, 'mcp_bridge.') "
        "if not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('gpu_service', 'torch'))\n"
        "assert not loaded, loaded\n"
        "print(len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    files = [p for p in (ROOT / "mcp_bridge").rglob("*.py") if p.name != "__main__.py"]
    assert int(out.stdout) == len(files) - 1, "every module of the bridge was imported (all but the package itself)"
