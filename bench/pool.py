"""Host pool benchmarks (issue 4): sharding speed-up over simulated hosts, and the pool's own overhead;
hosts of different speeds (issue 21): a fast host and a 2x slower one, the old dispatch against the new.

Simulated hosts are tiny HTTP servers on loopback that take a fixed time per text
(like a GPU that is never the bottleneck of this machine's 2 cores) and answer in
our wire format, so the numbers measure the pool, not the model.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import sys
import threading
import time

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.common import free_port, save, table
from mcp_bridge.client.client import Dispatch, GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from mcp_bridge.protocols.answers import parse_json

COST_PER_TEXT_S = 0.0005  # 2,000 texts/s per simulated GPU
DIMS = 8


def simulated_host(cost_per_text: float) -> tuple[str, uvicorn.Server, threading.Thread]:
    zero_row = base64.b64encode(b"\x00" * 4 * DIMS).decode()

    async def embed(request: Request) -> JSONResponse:
        n = len((await request.json())["texts"])
        await asyncio.sleep(cost_per_text * n)  # the "GPU" is busy; this host serves one batch at a time
        blob = base64.b64encode(base64.b64decode(zero_row) * n).decode()
        return JSONResponse({"model": "sim", "dimensions": DIMS, "count": n, "truncated": 0, "embeddings_base64": blob})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "device": "sim"})

    lock = asyncio.Lock()

    async def serialized(request: Request) -> JSONResponse:
        async with lock:
            return await embed(request)

    app = Starlette(routes=[Route("/embed", serialized, methods=["POST"]), Route("/health", health)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


async def sharded_seconds(urls: list[str], n_texts: int) -> float:
    config = parse_config({"hosts": [{"url": u, "name": f"s{i}"} for i, u in enumerate(urls)],
                           "shardSize": 250, "timeout": 300}, "bench")
    pool = HostPool(config)
    client = GpuClient(config, pool)
    texts = [f"t{i}" for i in range(n_texts)]
    await client.embed(texts[:500])  # warm connections
    start = time.perf_counter()
    result = await client.embed(texts)
    elapsed = time.perf_counter() - start
    assert len(result.embeddings) == n_texts
    await pool.close()
    return elapsed


async def overhead(url: str, n: int = 400) -> tuple[float, float]:
    """p50 latency of one request through the pool and directly with httpx (same host, same body)."""
    config = parse_config({"hosts": [{"url": url}]}, "bench")
    pool = HostPool(config)
    body = {"texts": ["x"]}
    direct, pooled = [], []

    def call(host: object) -> HttpCall:
        return HttpCall("POST", "/embed", body)

    def parse(host: object, response: httpx.Response) -> object:
        return parse_json(response)

    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(50):
            await http.post("/embed", json=body)
            await pool.request("embed", call, parse, deadline=time.monotonic() + 10)
        for _ in range(n):
            t = time.perf_counter()
            parse_json(await http.post("/embed", json=body))
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            await pool.request("embed", call, parse, deadline=time.monotonic() + 10)
            pooled.append(time.perf_counter() - t)
    await pool.close()
    return statistics.median(direct), statistics.median(pooled)


async def dispatch_seconds(urls: list[str], n_texts: int, dispatch: Dispatch, warm: bool = True) -> list[float]:
    """5 calls of `n_texts` (shards of 250) after a warm-up call that also measures the hosts' rates;
    with `warm=False` the one first call of a fresh pool (nothing measured yet)."""
    config = parse_config({"hosts": [{"url": u, "name": f"s{i}"} for i, u in enumerate(urls)],
                           "shardSize": 250, "timeout": 300}, "bench")
    pool = HostPool(config)
    client = GpuClient(config, pool, dispatch=dispatch)
    texts = [f"t{i}" for i in range(n_texts)]
    times = []
    if warm:
        await client.embed([f"w{i}" for i in range(2000)])
    for _ in range(5 if warm else 1):
        start = time.perf_counter()
        result = await client.embed(texts)
        times.append(time.perf_counter() - start)
        assert len(result.embeddings) == n_texts
    await pool.close()
    return times


def dispatch_table() -> dict[str, dict[str, list[float]]]:
    """Fast alone, fast + 2x slower with the old dispatch (the pool's work queue) and the new (by rate)."""
    fast, slow = simulated_host(COST_PER_TEXT_S), simulated_host(2 * COST_PER_TEXT_S)
    setups: list[tuple[str, list[str], Dispatch, bool]] = [
        ("fast alone", [fast[0]], "rates", True),
        ("fast + 2x slower, old dispatch (pool's work queue)", [fast[0], slow[0]], "pool", True),
        ("fast + 2x slower, new dispatch (by measured rate)", [fast[0], slow[0]], "rates", True),
        ("fast + 2x slower, new dispatch, first call (no rates yet)", [fast[0], slow[0]], "rates", False),
    ]
    rows, results = [], {}
    for label, urls, dispatch, warm in setups:
        big = asyncio.run(dispatch_seconds(urls, 2000, dispatch, warm))
        few = asyncio.run(dispatch_seconds(urls, 750, dispatch, warm))
        rows.append([label, *(f"{statistics.median(t):.3f} / {max(t):.3f}" for t in (big, few))])
        results[label] = {"2000_texts_s": big, "750_texts_s": few}
    table("Hosts of different speeds: fast = 2,000 texts/s, slower = 1,000 texts/s, shards of 250",
          ["pool and dispatch", "2,000 texts (8 shards): median / worst s", "750 texts (3 shards): median / worst s"],
          rows)
    for _, server, _ in (fast, slow):
        server.should_exit = True
    return results


def main() -> None:
    if sys.argv[1:] == ["dispatch"]:
        save("pool_dispatch", dispatch_table())
        return
    hosts = [simulated_host(COST_PER_TEXT_S) for _ in range(8)]
    urls = [u for u, _, _ in hosts]
    rows, results = [], {}
    base = asyncio.run(sharded_seconds(urls[:1], 8000))
    for n in (1, 2, 4, 8):
        seconds = base if n == 1 else asyncio.run(sharded_seconds(urls[:n], 8000))
        speedup = base / seconds
        rows.append([n, round(seconds, 3), round(speedup, 2), round(speedup / n, 2)])
        results[str(n)] = {"seconds": seconds, "speedup": speedup, "efficiency": speedup / n}
    table("Sharding: one 8,000-text request, simulated hosts at 2,000 texts/s each",
          ["hosts", "seconds", "speed-up vs 1", "speed-up / N"], rows)
    zero = simulated_host(0.0)
    direct, pooled = asyncio.run(overhead(zero[0]))
    table("Pool overhead per request (p50, zero-cost host)", ["path", "ms"],
          [["httpx directly", round(direct * 1000, 3)], ["through the pool", round(pooled * 1000, 3)],
           ["overhead", round((pooled - direct) * 1000, 3)]])
    results["overhead_ms"] = {"direct": direct * 1000, "pool": pooled * 1000, "overhead": (pooled - direct) * 1000}
    for _, server, _ in [*hosts, zero]:
        server.should_exit = True
    save("pool", results)
    save("pool_dispatch", dispatch_table())


if __name__ == "__main__":
    main()
