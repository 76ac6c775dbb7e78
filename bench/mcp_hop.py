"""The cost of a large result through the MCP hop (issue 6): 2,000 x 384 embeddings.

A simulated host returns 2,000 x 384 vectors at once (no model time), so what is
measured is the bridge: the pool call alone, then the same call as an MCP tool call
(in memory, and over stdio to a `gpu-bridge` subprocess). The difference is the hop.
"""

from __future__ import annotations

import asyncio
import base64
import os
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
from mcp_bridge.config import parse_config
from mcp_bridge.runtime import Bridge
from mcp_bridge.server import build_server

N, DIMS = 2000, 384


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


async def measure(url: str) -> dict[str, float]:
    texts = [f"text {i}" for i in range(N)]
    config = parse_config({"hosts": [{"url": url}], "shardSize": N}, "bench")
    out: dict[str, float] = {}
    async with Bridge(config, allow_embedded=False) as bridge:
        await bridge.gpu.embed(texts)
        out["pool call (no MCP)"] = await best(lambda: bridge.gpu.embed(texts))
        async with Client(build_server(bridge)) as client:
            await client.call_tool("gpu_embed", {"texts": texts})
            out["MCP in memory, float"] = await best(lambda: client.call_tool("gpu_embed", {"texts": texts}))
            out["MCP in memory, base64"] = await best(
                lambda: client.call_tool("gpu_embed", {"texts": texts, "encoding": "base64"}))
    env = {**os.environ, "HOME": str(ROOT / "tests")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_bridge", "--url", url, "--log-level",
                                                                 "warning"], env=env)
    async with Client(params) as client:
        await client.call_tool("gpu_embed", {"texts": texts})
        out["MCP over stdio, float"] = await best(lambda: client.call_tool("gpu_embed", {"texts": texts}))
        out["MCP over stdio, base64"] = await best(
            lambda: client.call_tool("gpu_embed", {"texts": texts, "encoding": "base64"}))
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
    rows = [[name, round(t, 3), round(t - base, 3)] for name, t in times.items()]
    table(f"A {N} x {DIMS} gpu_embed result through the MCP hop (best of 5)", ["path", "seconds", "hop cost"], rows)
    server.should_exit = True
    save("mcp_hop", {k: v for k, v in times.items()})


if __name__ == "__main__":
    main()
