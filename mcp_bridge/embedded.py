"""The embedded default: with no hosts configured, run a GPU service next to the bridge.

The service runs as a child process on 127.0.0.1 (a free port), so a user with the
service extra installed gets a working bridge with zero configuration. Without the
extra, the bridge says how to configure hosts instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

log = logging.getLogger("mcp_bridge.embedded")

NOT_CONFIGURED = (
    "no GPU hosts are configured. Set `hosts` in the plugin config (OpenClaw: plugins.entries."
    "openclaw-gpu-bridge.config; elsewhere --config FILE or GPU_BRIDGE_CONFIG), or GPU_BRIDGE_URLS="
    "http://gpu-box:8765, or install the service extra (pip install 'openclaw-gpu-bridge[service]') "
    "to run a local GPU service automatically"
)


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM us when the bridge dies, however it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the bridge's own shutdown still stops the child


def service_installed() -> bool:
    """The service's distribution (openclaw-gpu-service) and what it runs on, found without importing them."""
    modules = ("gpu_service", "torch", "fastapi", "uvicorn", "sentence_transformers")
    return all(importlib.util.find_spec(m) is not None for m in modules)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedService:
    def __init__(self, port: int | None = None, startup_timeout_s: float = 180.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env.pop("API_KEY", None)  # loopback only, and the bridge would not know the key
        env.setdefault("HF_HUB_OFFLINE", "1")
        # The child's output goes to our stderr: under stdio, stdout is the MCP channel.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpu_service", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(), env=env,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        log.info("starting the embedded GPU service on %s (pid %d)", self.url, self.process.pid)
        deadline = time.monotonic() + self.startup_timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the embedded GPU service exited with code {self.process.returncode}")
                try:
                    response = await client.get("/health")
                    if response.status_code == 200:
                        log.info("embedded GPU service ready")
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the embedded GPU service did not become ready within {self.startup_timeout_s:.0f}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
