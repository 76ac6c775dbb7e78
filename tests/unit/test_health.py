"""Active health checks (mcp_bridge/pool/health.py), with `httpx.MockTransport` hosts and the pool tests'
hand-driven clock: state transitions, ejections ended by a probe, starting services, and the
host's own queue weighed by least-busy."""

from __future__ import annotations

import random

import httpx
import pytest

from mcp_bridge.pool.health import HealthMonitor
from tests.unit.test_pool import Clock, Handler, make_pool, ok


@pytest.mark.anyio
async def test_health_state_transitions() -> None:
    clock = Clock()
    up = {"a": True}

    def health(request: httpx.Request) -> httpx.Response:
        if not up["a"]:
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, json={"status": "ok", "device": "cpu"})

    pool = make_pool({"a": health, "b": ok}, clock, unhealthyThreshold=2, healthyThreshold=2,
                     healthCheckIntervalSeconds=10)
    monitor = HealthMonitor(pool, rng=random.Random(0))
    a = pool.host("a")
    up["a"] = False
    assert not await monitor.probe(a)
    assert a.state(clock.now) == "healthy", "one failed probe is not enough"
    await monitor.probe(a)
    assert a.state(clock.now) == "unhealthy"
    assert monitor.next_delay(a) <= 10 / 4 * 1.1, "down hosts are probed more often"
    up["a"] = True
    await monitor.probe(a)
    assert a.state(clock.now) == "unhealthy", "healthyThreshold=2 needs two passing probes"
    await monitor.probe(a)
    assert a.state(clock.now) == "healthy"
    assert 9 <= monitor.next_delay(a) <= 11


@pytest.mark.anyio
async def test_passing_probe_ends_an_ejection() -> None:
    clock = Clock()
    pool = make_pool({"a": lambda r: httpx.Response(200, json={"status": "ok"}), "b": ok}, clock)
    a = pool.host("a")
    for _ in range(3):
        a.failed("boom")
    assert a.ejected(clock.now)
    await HealthMonitor(pool).probe(a)
    assert not a.ejected(clock.now) and a.state(clock.now) == "healthy"


@pytest.mark.anyio
async def test_starting_service_is_not_healthy() -> None:
    pool = make_pool({"a": lambda r: httpx.Response(503, json={"status": "starting", "device": "cpu"})},
                     unhealthyThreshold=1)
    assert not await HealthMonitor(pool).probe(pool.host("a"))
    assert pool.host("a").state(pool.clock()) == "unhealthy"


@pytest.mark.anyio
async def test_least_busy_weighs_the_hosts_own_queue_from_health_checks() -> None:
    def host_with_queue(depth: int) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/status":
                return httpx.Response(200, json={"status": "ok", "uptime_s": 1.0, "queue_depth": depth,
                                                 "active_jobs": [], "models": [], "batches": {}})
            return httpx.Response(200, json={"status": "ok", "device": "cpu"})

        return handler

    pool = make_pool({"a": host_with_queue(5000), "b": host_with_queue(0)}, shardSize=250)
    monitor = HealthMonitor(pool)
    for h in pool.hosts:
        await monitor.probe(h)
    assert pool.host("a").load() == 20.0  # 5,000 queued items = 20 shard-sized requests
    assert {pool.pick("embed").name for _ in range(20)} == {"b"}, "another client's backlog on a counts"
