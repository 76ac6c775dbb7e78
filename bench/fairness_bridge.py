"""The bridge of `bench/fairness.py`: a `gpu-bridge --transport http` process over services of ours, and how a
tenant's client calls it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import httpx

from bench.common import ServerProcess, free_port
from gpu_protocol.priority import TENANT_HEADER
from mcp_bridge.embedded import die_with_parent

BRIDGE_TIMEOUT_S = 120.0
"""The bridge's deadline per call, above its default 45 s, so that a long wait is measured, not refused."""


class BridgeProcess(ServerProcess):
    """`gpu-bridge --transport http` over `hosts`, behind a bearer token; ready once `/v1/models` answers it."""

    def __init__(self, hosts: list[str], shard_size: int = 256, max_concurrent: int | None = None,
                 timeout: float = BRIDGE_TIMEOUT_S) -> None:
        port = free_port()
        limit = {"maxConcurrent": max_concurrent} if max_concurrent else {}
        config = {"hosts": [{"url": url, "name": f"h{i}", **limit} for i, url in enumerate(hosts)],
                  "shardSize": shard_size, "timeout": timeout}
        self.token = secrets.token_hex(16)
        command = [sys.executable, "-m", "mcp_bridge", "--transport", "http", "--port", str(port),
                   "--log-level", "warning"]
        super().__init__("gpu-bridge", command, port, ready_path="/v1/models",
                         env={"GPU_BRIDGE_CONFIG": json.dumps(config), "GPU_BRIDGE_AUTH_TOKEN": self.token})
        self.env.pop("GPU_BRIDGE_URLS", None)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 120.0) -> BridgeProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, cwd=self.cwd, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url + self.ready_path, headers=self.headers, timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} on {self.url} not ready:\n{self.logs()[-3000:]}")


def tenant_headers(bridge: BridgeProcess, tenant: str) -> dict[str, str]:
    """How a tenant's client calls the bridge: the bridge's one token and `X-GPU-Tenant`, which a bridge without
    `clients` takes as the caller's tenant (docs/sharing.md): its slot gate shares by it and it travels to the
    hosts' queues. A bridge with `clients` (per-client tokens) takes the tenant from the client's own token
    instead; this bench starts its bridge without them, so one token serves every tenant."""
    return {**bridge.headers, TENANT_HEADER: tenant}
