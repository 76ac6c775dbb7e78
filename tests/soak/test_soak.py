"""Long load and fault runs (`make soak`): overload, 10,000 calls, restarts and kills under load."""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from tests.support.reliability import record

pytestmark = [pytest.mark.soak, pytest.mark.slow]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.anyio
async def test_overload_at_10x_queue_capacity_for_30s(service_factory) -> None:
    queue = 64
    svc = service_factory(env={"GPU_MAX_QUEUE": str(queue)}).start()
    assert svc.process is not None
    texts = [f"overload text {i} with a few more words" for i in range(4)]
    codes: dict[int, int] = {}
    bad_retry_after = 0
    incomplete = 0
    peak = rss_mb(svc.process.pid)
    stop = time.monotonic() + 30

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal bad_retry_after, incomplete
        while time.monotonic() < stop:
            r = await http.post(f"{svc.url}/embed", json={"texts": texts, "encoding_format": "base64"})
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if r.status_code == 429:
                if int(r.headers.get("retry-after", "0")) < 1:
                    bad_retry_after += 1
                await asyncio.sleep(0.05)  # a client that backs off a little, not per Retry-After: keep pressure on
            elif r.status_code == 200 and r.json()["count"] != 4:
                incomplete += 1

    async def watch_memory() -> None:
        nonlocal peak
        while time.monotonic() < stop:
            peak = max(peak, rss_mb(svc.process.pid))  # type: ignore[union-attr]
            await asyncio.sleep(0.25)

    # 160 clients x 4 texts = 640 items outstanding = 10x the queue
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=200)) as http:
        await asyncio.gather(watch_memory(), *(client(http) for _ in range(160)))
        after = await http.post(f"{svc.url}/embed", json={"texts": ["right after"]})
    assert set(codes) <= {200, 429}, codes
    assert codes.get(429, 0) > 0 and codes.get(200, 0) > 0
    assert bad_retry_after == 0 and incomplete == 0
    assert after.status_code == 200
    record("load", "one service at 10x its queue (GPU_MAX_QUEUE=64, 640 items outstanding) for 30 s",
           f"{codes.get(200, 0)} accepted, all complete; {codes.get(429, 0)} refused with 429 + Retry-After; "
           f"no other status; peak RSS {peak:.0f} MB; served normally right after")


@pytest.mark.anyio
async def test_10000_small_concurrent_calls_through_the_bridge(service_factory) -> None:
    svc = service_factory().start()
    latencies: list[float] = []
    errors = 0
    async with Bridge(parse_config({"hosts": [{"url": svc.url}], "timeout": 120}, "t"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as c:
            gate = asyncio.Semaphore(100)

            async def one(i: int) -> None:
                nonlocal errors
                async with gate:
                    start = time.perf_counter()
                    r = await c.call_tool("gpu_embed", {"texts": [f"call {i}"], "encoding": "base64"})
                    latencies.append(time.perf_counter() - start)
                    if r.is_error or r.structured_content["count"] != 1:
                        errors += 1

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(10_000)))
            wall = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * len(latencies)) - 1]
    record("load", "10,000 single-text gpu_embed calls through the bridge, 100 concurrent",
           f"{10_000 / wall:.0f} calls/s, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, {errors} errors")
    assert errors == 0


@pytest.mark.anyio
async def test_service_restart_under_load_loses_nothing(service_factory) -> None:
    a, b = service_factory(), service_factory()
    a.start(wait=False)
    b.start()
    a.wait_ready()
    config = {"hosts": [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}], "timeout": 120,
              "healthCheckIntervalSeconds": 1}
    outcomes = {"ok": 0, "failed": 0}
    async with Bridge(parse_config(config, "t"), allow_embedded=False) as bridge:
        stop = time.monotonic() + 20

        async def caller(k: int) -> None:
            i = 0
            while time.monotonic() < stop:
                try:
                    r = await bridge.gpu.embed([f"caller {k} text {i}"] * 4)
                    outcomes["ok" if len(r.embeddings) == 4 else "failed"] += 1
                except Exception:  # noqa: BLE001 - counted, and the test fails on any
                    outcomes["failed"] += 1
                i += 1

        async def restart() -> None:
            await asyncio.sleep(4)
            a.signal(signal.SIGTERM)  # graceful: drains in-flight requests, refuses new ones
            await asyncio.to_thread(a.process.wait, 60)  # type: ignore[union-attr]
            await asyncio.to_thread(a.start)

        await asyncio.gather(restart(), *(caller(k) for k in range(16)))
        served_a = bridge.pool.host("a").record.served
    assert outcomes["failed"] == 0, outcomes
    record("fault", "graceful restart (SIGTERM, start again) of one of 2 hosts under 16 concurrent callers for 20 s",
           f"{outcomes['ok']} calls, 0 failed or lost; restarted host served again ({served_a} requests in total)")


def test_fuzz_the_openapi_schema(service_factory, tmp_path: Path) -> None:
    """schemathesis generates requests from the service's own OpenAPI: no 5xx, no crash."""
    import re
    import shutil
    import subprocess
    import sys

    runner = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(runner).exists():
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    # Small limits keep each generated request cheap, and put the limit paths under fire too.
    svc = service_factory(env={"GPU_MAX_TEXTS": "8", "GPU_MAX_TEXT_CHARS": "64", "API_KEY": "fuzz-key"}).start()
    junit = tmp_path / "fuzz.xml"
    out = subprocess.run(
        [runner, "run", f"{svc.url}/openapi.json", "--max-examples", "1000", "--checks", "not_a_server_error",
         "--header", "X-API-Key: fuzz-key", "--workers", "1", "--report", "junit", "--report-junit-path", str(junit),
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=1500,
    )
    assert svc.process is not None and svc.process.poll() is None, "the service survived the fuzzing"
    assert httpx.get(f"{svc.url}/health").status_code == 200
    summary = out.stdout[-3000:]
    assert out.returncode == 0, summary
    cases = re.findall(r"(\d+) generated, (\d+) passed", out.stdout)
    operations = re.findall(r"Tested: (\d+)", out.stdout)
    generated = cases[-1][0] if cases else "?"
    record("abuse", "schemathesis fuzzing of the OpenAPI (every operation, --max-examples 1000, check: no 5xx)",
           f"{generated} cases generated over {operations[-1] if operations else '?'} operations, 0 server errors, "
           "service healthy afterwards (parameterless GETs yield only a few distinct cases each)")
