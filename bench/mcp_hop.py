"""The cost of a large result through the MCP hop (issue 6): 2,000 x 384 embeddings.

A simulated host returns 2,000 x 384 vectors at once (no model time), so what is
measured is the bridge: the pool call alone, then the same call as an MCP tool call
(in memory, over stdio to a `gpu-bridge` subprocess from the Python SDK client, and
from the TypeScript SDK client that OpenClaw, Claude Desktop and the Inspector use).
The difference is the hop. "float (no budget)" lifts `limits.maxResultMB` to show what
numbers would cost; by default (`auto`) a result this size travels as base64.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import uvicorn
from mcp import Client, StdioServerParameters
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.common import ROOT, free_port, save, table
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server

N, DIMS = 2000, 384
LIFTED = '{"limits": {"maxResultMB": 64}}'
TS_SDK = ROOT / ".cache" / "inspector" / "node_modules" / "@modelcontextprotocol"


def host() -> tuple[str, uvicorn.Server]:
    import numpy as np

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((N, DIMS)).astype("<f4")
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)

    async def embed(request: Request) -> JSONResponse:
        n = len((await request.json())["texts"])
        blob = base64.b64encode(rows[:n].tobytes()).decode()
        return JSONResponse({"model": "sim", "dimensions": DIMS, "count": n, "truncated": 0, "embeddings_base64": blob})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "device": "sim"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/embed", embed, methods=["POST"]),
                                                             Route("/health", health)]),
                                           host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server


async def measure(url: str) -> dict[str, float | str]:
    texts = [f"text {i}" for i in range(N)]
    out: dict[str, float | str] = {}
    config = parse_config({"hosts": [{"url": url}], "shardSize": N, "limits": {"maxResultMB": 64}}, "bench")
    async with Bridge(config, allow_embedded=False) as bridge:
        await bridge.gpu.embed(texts)
        out["pool call (no MCP)"] = await best(lambda: bridge.gpu.embed(texts))
        async with Client(build_server(bridge)) as client:
            for encoding in ("float", "base64"):
                call = {"texts": texts, "encoding": encoding}
                await client.call_tool("gpu_embed", call)
                label = "float (no budget)" if encoding == "float" else encoding
                out[f"in memory, {label}"] = await best(lambda call=call: client.call_tool("gpu_embed", call))
    for label, env in [("auto (default)", {}), ("float (no budget)", {"GPU_BRIDGE_CONFIG": LIFTED})]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mcp_bridge", "--url", url, "--log-level", "warning"],
            env={**os.environ, "HOME": str(ROOT / "tests"), **env},
        )
        encoding = "float" if "float" in label else "auto"
        async with Client(params) as client:
            await client.call_tool("gpu_embed", {"texts": texts, "encoding": encoding})
            out[f"stdio, Python SDK client, {label}"] = await best(
                lambda client=client, encoding=encoding: client.call_tool("gpu_embed", {"texts": texts, "encoding": encoding})
            )
    out.update(typescript_client(url))
    return out


def typescript_client(url: str) -> dict[str, float | str]:
    """The same calls from the TypeScript SDK (installed with the Inspector by `make test`)."""
    if shutil.which("node") is None or not (TS_SDK / "client").exists():
        return {"stdio, TypeScript SDK client": "skipped (run `make test` once to install the Inspector)"}
    out: dict[str, float | str] = {}
    for label, env, encoding in [("auto (default)", {}, "auto"),
                                 ("float (no budget)", {"GPU_BRIDGE_CONFIG": LIFTED}, "float")]:
        proc = subprocess.run(
            ["node", str(ROOT / "bench" / "mcp_hop_ts.mjs"), str(TS_SDK), sys.executable, url, str(N), encoding],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
            env={**os.environ, "HOME": str(ROOT / "tests"), **env},
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out[f"stdio, TypeScript SDK client, {label}"] = row.get("seconds") or f"fails: {row['error']}"
    return out


async def best(fn, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await fn()
        if hasattr(result, "is_error"):
            assert not result.is_error and result.structured_content["count"] == N
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    url, server = host()
    times = asyncio.run(measure(url))
    base = times["pool call (no MCP)"]
    assert isinstance(base, float)
    rows = [[name, round(t, 3), round(t - base, 3)] if isinstance(t, float) else [name, t, "-"]
            for name, t in times.items()]
    table(f"A {N} x {DIMS} gpu_embed result through the MCP hop (best of 5)", ["path", "seconds", "hop cost"], rows)
    server.should_exit = True
    save("mcp_hop", dict(times))


if __name__ == "__main__":
    main()
