"""Earlier releases, built from git history for mixed-version tests (releases.json records their commits).

`old_release(PREVIOUS_RELEASE)` builds that commit's two distributions (the bridge at the repo root, the
service in service/) into a virtual environment of its own, once: it is cached in the checkout,
under .cache/releases/<commit> (GPU_BRIDGE_RELEASE_CACHE overrides), like the npm caches. The old
wheels are installed without dependencies in that venv's own site-packages, and a .pth file puts
this checkout's venv's site-packages after them, so the old code runs on today's dependencies (torch
and the models are not installed twice). That ties the release venv to the venv it was built on, so
its `ready` marker names both, and a marker naming another venv (moved, deleted, another checkout's)
means build again. Its console scripts run the old code only with PYTHONPATH unset
(`OldRelease.env`), since tests put the checkout on it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ROOT / "releases.json"
CACHE = Path(os.environ.get("GPU_BRIDGE_RELEASE_CACHE", ROOT / ".cache" / "releases"))


@dataclass(frozen=True)
class OldRelease:
    version: str
    commit: str
    venv: Path
    protocol: int
    """Its wire protocol version (releases.json)."""

    def script(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for its processes: no PYTHONPATH (that would import this checkout instead)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "GPU_BRIDGE_CONFIG", "GPU_BRIDGE_URLS", "VIRTUAL_ENV")}
        return {**env, "HF_HUB_OFFLINE": "1", **extra}

    def origin(self, module: str) -> str:
        """Where `module` is imported from in this release's venv (to check it is the old code)."""
        out = subprocess.run([str(self.venv / "bin/python"), "-c", f"import {module}; print({module}.__file__)"],
                             env=self.env(), capture_output=True, text=True, check=True, cwd="/")
        return out.stdout.strip()


def _recorded() -> list[dict[str, object]]:
    return list(json.loads(RELEASES.read_text())["releases"])


def _release(version: str) -> dict[str, object]:
    for release in _recorded():
        if release["version"] == version:
            return release
    raise KeyError(f"{version} is not in {RELEASES}")


def release_commit(version: str) -> str:
    return str(_release(version)["commit"])


PREVIOUS_RELEASE = str(_recorded()[-1]["version"])
"""The newest release in releases.json: "the previous release" of the mixed-version tests."""
FIRST_RELEASE = str(_recorded()[0]["version"])
"""The oldest release still promised to work with this tree (protocol 1; tested in `make soak` only)."""


def _git(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False, **kw)  # type: ignore[call-overload,no-any-return]


def old_release(version: str) -> OldRelease:
    """The release `version` installed in its cached venv; the test is skipped (saying why) when its
    commit is not in this clone's history."""
    commit = release_commit(version)
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        pytest.skip(f"release {version}'s commit {commit[:12]} is not in this clone (a shallow clone?): "
                    "fetch the full history to run mixed-version tests")
    venv = CACHE / commit
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{commit}.lock", "w") as lock:  # two test workers build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = venv / "ready"
        if not ready.exists() or ready.read_text() != _ready_marker(commit):
            _build(commit, venv)
    return OldRelease(version, commit, venv, int(str(_release(version)["protocol"])))


def _ready_marker(commit: str) -> str:
    """What a usable release venv's `ready` file holds: its commit and the site-packages its .pth points at."""
    return f"{commit}\n{sysconfig.get_path('purelib')}\n"


def _build(commit: str, venv: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        src, wheels, staged = Path(tmp, "src"), Path(tmp, "wheels"), Path(tmp, "venv")
        src.mkdir()
        archive = _git("archive", "--format=tar", commit)
        if archive.returncode != 0:
            raise RuntimeError(f"git archive {commit} failed: {archive.stderr.decode()[-500:]}")
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        for project in (src, src / "service"):
            subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(project)],
                           check=True, capture_output=True)
        # The venv is made where it will live: scripts carry their interpreter's absolute path.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(staged)], check=True)
        if venv.exists():
            shutil.rmtree(venv)
        staged.rename(venv)
        # Without PYTHONPATH: pointed at this checkout, its *.egg-info made pip take the release as installed.
        clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([*pip, "--python", str(venv / "bin/python"), "install", "--no-deps", "--no-index",
                        *map(str, sorted(wheels.glob("*.whl")))], check=True, capture_output=True, env=clean)
        if not (venv / "bin" / "gpu-service").is_file():
            raise RuntimeError(f"release {commit[:12]}: pip installed no gpu-service into {venv}")
        purelib = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig;print(sysconfig.get_path('purelib'))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        # After its own site-packages: today's dependencies, without this venv's editable finders.
        Path(purelib, "zz-current-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
        (venv / "ready").write_text(_ready_marker(commit))


class OldService(ServiceProcess):
    """A `gpu-service` process of an earlier release, from the release's own venv."""

    forkable = False

    def __init__(self, release: OldRelease, env: dict[str, str] | None = None, port: int | None = None) -> None:
        super().__init__(port=port)
        self.release = release
        self.env = release.env(GPU_SERVICE_LOG="1", **(env or {}))

    def command(self) -> list[str]:
        return [self.release.script("gpu-service"), "--host", self.bind, "--port", str(self.port)]
