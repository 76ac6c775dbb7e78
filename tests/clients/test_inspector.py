"""The MCP Inspector CLI (the reference MCP client, from npm) against the bridge: stdio and HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.bridges import bridge_mcp_url
from tests.support.npm_cache import ensure, npm_install
from tests.support.services import ServiceProcess

INSPECTOR_VERSION = "2.12.0"
CACHE = ROOT / ".cache" / "inspector"


@pytest.fixture(scope="module")
def inspector() -> Path:
    if shutil.which("npx") is None or shutil.which("npm") is None:
        pytest.skip("npm/npx not installed: the MCP Inspector CLI runs on Node.js")
    binary = CACHE / "node_modules" / ".bin" / "mcp-inspector"
    ensure(CACHE, binary.exists, lambda: npm_install(CACHE, f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"))
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert INSPECTOR_VERSION in version, f"expected inspector {INSPECTOR_VERSION}, got {version!r}"
    return binary


def run_raw(binary: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MCP_INSPECTOR_SECRET_STORE": "memory", "HOME": str(CACHE), **(env or {})}
    return subprocess.run([str(binary), "--cli", *args], capture_output=True, text=True, timeout=180, env=env)


def run(binary: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    out = run_raw(binary, *args, env=env)
    assert out.returncode == 0, f"inspector failed ({out.returncode}): {out.stderr[-2000:]}"
    return json.loads(out.stdout)


def test_inspector_over_stdio(inspector: Path, service: ServiceProcess) -> None:
    server = [sys.executable, "-m", "mcp_bridge", "--url", service.url]
    tools = run(inspector, *server, "--method", "tools/list")
    assert {t["name"] for t in tools["tools"]} >= {"gpu_health", "gpu_info", "gpu_status", "gpu_embed", "gpu_bertscore"}
    result = run(inspector, *server, "--method", "tools/call", "--tool-name", "gpu_embed",
                 "--tool-arg", 'texts=["hello from the inspector", "second"]')
    assert result["isError"] is False and result["structuredContent"]["count"] == 2
    assert len(result["structuredContent"]["embeddings"][0]) == 384


def test_a_2000_vector_result_reaches_a_typescript_sdk_client(inspector: Path, service: ServiceProcess) -> None:
    """The Inspector, like OpenClaw and Claude Desktop, is built on the TypeScript MCP SDK, which
    closes a stdio connection on any message over 10 MiB. 2,000 x 384 vectors as numbers are
    ~16 MB: by default the bridge returns them as base64 (4 MB) and the call succeeds; with the
    result budget lifted, the same call as numbers loses the connection."""
    from gpu_protocol.codec import decode_float32_rows

    texts = [f"vector number {i}" for i in range(2000)]
    call = [sys.executable, "-m", "mcp_bridge", "--url", service.url, "--method", "tools/call",
            "--tool-name", "gpu_embed", "--tool-arg", f"texts={json.dumps(texts)}"]
    result = run(inspector, *call)
    out = result["structuredContent"]
    assert result["isError"] is False and out["encoding"] == "base64" and out["count"] == 2000
    rows = decode_float32_rows(out["embeddings_base64"], 2000, 384)
    assert abs(sum(x * x for x in rows[1999]) - 1.0) < 1e-4

    lifted = run_raw(inspector, "-e", 'GPU_BRIDGE_CONFIG={"limits": {"maxResultMB": 64}}', *call,
                     "--tool-arg", "encoding=float")
    assert lifted.returncode != 0 and "Connection closed" in lifted.stderr + lifted.stdout, lifted.stderr[-2000:]


@pytest.fixture
def http_bridge_url(service: ServiceProcess) -> Iterator[str]:
    with bridge_mcp_url(service.url, token="insp-token") as url:
        yield url


def test_inspector_over_http(inspector: Path, http_bridge_url: str) -> None:
    common = [http_bridge_url, "--transport", "http", "--header", "Authorization: Bearer insp-token",
              "--stored-auth-only"]
    tools = run(inspector, *common, "--method", "tools/list")
    assert "gpu_embed" in {t["name"] for t in tools["tools"]}
    for name, arg in [("gpu_embed", 'texts=["over http"]'), ("gpu_health", None)]:
        extra = ["--tool-arg", arg] if arg else []
        result = run(inspector, *common, "--method", "tools/call", "--tool-name", name, *extra)
        assert result["isError"] is False, result


def test_inspector_with_the_shipped_mcp_json(inspector: Path, service: ServiceProcess, tmp_path: Path) -> None:
    """.mcp.json doubles as the Inspector's --config file."""
    config = json.loads((ROOT / ".mcp.json").read_text())
    entry = config["mcpServers"]["gpu-bridge"]
    entry["command"] = str(Path(sys.executable).parent / entry["command"])
    entry["env"] = {"GPU_BRIDGE_URLS": service.url, "HOME": str(tmp_path)}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    result = run(inspector, "--config", str(path), "--server", "gpu-bridge", "--method", "tools/call",
                 "--tool-name", "gpu_similarity", "--tool-arg", 'texts=["red apple", "blue car"]',
                 "--tool-arg", "query=fruit")
    assert result["structuredContent"]["matches"][0]["index"] == 0
