"""The client snippets of the README and docs/, taken from the pages themselves and run.

Each `mcpServers` / `servers` entry is started exactly as a client would start it (command,
args, env from the snippet; only the example config path is pointed at a file of ours) and
asked for its tools and one embedding, by the Python SDK client and by the MCP Inspector,
which reads the same `mcpServers` layout as Claude Desktop and Cursor. The OpenClaw config
snippets are read by the bridge's own OpenClaw loader and checked against the plugin schema.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import json5
import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from mcp_bridge.config import PLUGIN_ID, load_config
from tests.support import ROOT
from tests.support.bridges import bridge_env
from tests.support.doc_pages import blocks
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def snippet(language: str, *needles: str) -> Any:
    """The one ```<language> block on any documentation page that contains every needle, parsed."""
    found = [b for b in blocks(language) if all(n in b for n in needles)]
    assert len(found) == 1, f"expected one ```{language} block containing {needles}, found {len(found)}"
    return json5.loads(found[0]) if language == "json5" else json.loads(found[0])


def runnable(entry: dict[str, Any], config: Path, home: Path) -> dict[str, Any]:
    """The entry as the client would run it, with the README's example paths pointed at `config`."""
    args = [str(config) if a.endswith(".json") else a for a in entry.get("args", [])]
    env = {**bridge_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(home), **entry.get("env", {})}
    return {"command": entry["command"], "args": args, "env": env}


async def list_and_embed(entry: dict[str, Any]) -> None:
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"])
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"gpu_embed", "gpu_similarity", "gpu_health"} <= names
        result = await client.call_tool("gpu_embed", {"texts": ["from the README"]})
        assert not result.is_error, result.content
        assert result.structured_content["count"] == 1 and result.structured_content["dimensions"] == 384


@pytest.fixture
def pool_file(service: ServiceProcess, tmp_path: Path) -> Path:
    path = tmp_path / "gpu-bridge.json"
    path.write_text(json.dumps({"hosts": [{"name": "readme-host", "url": service.url}]}))
    return path


@pytest.mark.anyio
async def test_claude_desktop_and_cursor_snippet(pool_file: Path) -> None:
    entry = snippet("json", '"mcpServers"', '"command"')["mcpServers"]["gpu-bridge"]
    assert entry["command"] == "gpu-bridge" and "PYTHONPATH" not in json.dumps(entry)
    await list_and_embed(runnable(entry, pool_file, pool_file.parent))


@pytest.mark.anyio
async def test_vs_code_snippet(pool_file: Path) -> None:
    entry = snippet("json", '"servers"')["servers"]["gpu-bridge"]
    assert entry["type"] == "stdio"
    await list_and_embed(runnable(entry, pool_file, pool_file.parent))


@pytest.mark.anyio
async def test_openclaw_mcp_servers_override_snippet(pool_file: Path) -> None:
    entry = snippet("json5", "mcp:")["mcp"]["servers"]["gpu-bridge"]
    await list_and_embed(runnable(entry, pool_file, pool_file.parent))


def test_openclaw_plugin_config_snippet_is_what_the_bridge_reads(tmp_path: Path) -> None:
    """The `plugins.entries` snippet, saved as OpenClaw's config file, is the bridge's configuration
    and satisfies the manifest's configSchema (no network: its hosts are examples)."""
    text = next(b for b in blocks("json5") if "plugins:" in b)
    path = tmp_path / "openclaw.json"
    path.write_text(text)
    config, source = load_config(env={"OPENCLAW_CONFIG_PATH": str(path), "HOME": str(tmp_path)})
    assert "openclaw" in source.lower()
    assert [h.name for h in config.hosts] == ["rtx-3090", "rtx-2080ti"] and config.hosts[1].weight == 0.5
    manifest = json.loads((ROOT / "openclaw.plugin.json").read_text())
    jsonschema.validate(json5.loads(text)["plugins"]["entries"][PLUGIN_ID]["config"], manifest["configSchema"])
    assert manifest["id"] == PLUGIN_ID and "gpu-bridge" in manifest["mcpServers"]
    assert f"{PLUGIN_ID}" in README and "gpu-bridge__gpu_embed" in README


@pytest.mark.anyio
async def test_remote_streamable_http_snippet(pool_file: Path) -> None:
    """The README's server command line and client entry, on loopback with a real token."""
    import shlex
    import subprocess

    import httpx
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from mcp_bridge.embedded import free_port

    command = next(b for b in blocks("bash") if "--transport http --host 0.0.0.0" in b).strip()
    port, token = free_port(), "readme-token-123"
    argv = shlex.split(command.replace('"$(openssl rand -hex 24)"', token))
    argv = [{"0.0.0.0": "127.0.0.1", "8787": str(port), "pool.json": str(pool_file)}.get(a, a) for a in argv]
    assert argv[0] == "gpu-bridge" and "--auth-token" in argv
    entry = snippet("json", '"type": "http"')["mcpServers"]["gpu-bridge"]
    url = entry["url"].replace("https://bridge.example:8787", f"http://127.0.0.1:{port}")
    headers = {k: v.replace("<token>", token) for k, v in entry["headers"].items()}
    env = {**bridge_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _up(url) or proc.poll() is not None, timeout=60, interval=0.2,
                   message="the bridge did not start")
        assert proc.poll() is None, "the bridge did not start"
        assert httpx.post(url, json={}).status_code == 401, "no token: refused"
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                result = await client.call_tool("gpu_embed", {"texts": ["remote"]})
                assert not result.is_error and result.structured_content["count"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _up(url: str) -> bool:
    import httpx

    try:
        httpx.post(url, json={}, timeout=1)
        return True
    except httpx.HTTPError:
        return False
