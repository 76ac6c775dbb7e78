"""Bridges for tests: the environment for a `gpu-bridge` process, a bridge process on a free port, and an
in-process bridge with an MCP client connected in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from mcp import Client

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.embedded import free_port
from mcp_bridge.mcp.server import build_server
from tests.support import ROOT
from tests.support.waiting import wait_until


def bridge_env() -> dict[str, str]:
    """The environment for a bridge subprocess: no config leaks in from this machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("GPU_BRIDGE_CONFIG", "GPU_BRIDGE_URLS")}
    env["HOME"] = str(ROOT / "tests")
    return env


@asynccontextmanager
async def bridge_client(config: dict[str, Any]) -> AsyncIterator[Client]:
    """An in-process bridge on `config` (no embedded service) and a real MCP client connected to it in memory."""
    async with Bridge(parse_config(config, "test"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as client:
            yield client


@contextmanager
def bridge_mcp_url(service_url: str, transport: str = "http", token: str | None = None) -> Iterator[str]:
    """A `gpu-bridge --transport http|sse --url service_url` subprocess on a free port; yields its MCP
    endpoint's URL (/mcp or /sse), always stopped. For the OpenAI /v1 side see `openai_bridge` in
    tests/clients/test_openai_api.py."""
    port = free_port()
    args = [sys.executable, "-m", "mcp_bridge", "--transport", transport, "--port", str(port), "--url", service_url]
    proc = subprocess.Popen([*args, *(["--auth-token", token] if token else [])], env=bridge_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/{'sse' if transport == 'sse' else 'mcp'}"
    try:
        wait_until(lambda: _answers(url), timeout=60, interval=0.2, message=f"the bridge at {url} never answered")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        with httpx.stream("GET", url, timeout=1):
            return True
    except httpx.HTTPError:
        return False
