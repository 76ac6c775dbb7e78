"""DNS discovery: one `discover: "dns"` entry becomes one pool host per address, and follows the answers.

The hosts are real gpu-service processes on three loopback addresses (127.0.0.1-3, one port, as
the pods behind a Kubernetes headless Service share one). The resolver is the only stand-in:
there is no DNS server here, so the test serves the answers a headless Service's records would
give, and changes them between refreshes as pods come and go.
"""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.embedded import free_port
from mcp_bridge.pool.discovery import DnsDiscovery, address_url
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from mcp_bridge.protocols.answers import parse_json
from tests.support.service_probes import requests_received
from tests.support.services import start_together
from tests.support.waiting import run_ready_tasks, wait_until_async

PODS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
HEADLESS = "gpu-service-headless.gpu.svc.cluster.local"


class Records:
    """What the headless Service's name resolves to right now (the test changes it)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = list(addresses)
        self.asked: list[str] = []

    async def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        return list(self.addresses)


def test_address_url_keeps_scheme_port_and_path() -> None:
    assert address_url("http://svc.ns.svc:8765", "10.0.0.7") == "http://10.0.0.7:8765"
    assert address_url("https://svc.ns.svc/base", "fd00::7") == "https://[fd00::7]/base"


@pytest.mark.anyio
async def test_one_dns_entry_is_one_host_per_pod_and_follows_the_records(service_factory) -> None:
    port = free_port()
    pods = start_together([service_factory(bind=ip, port=port) for ip in PODS])

    def embeds_sent() -> list[float]:
        return [requests_received(pod.url, "/embed") for pod in pods]
    records = Records(PODS)
    config = parse_config({
        "hosts": [{"name": "gpu", "url": f"http://{HEADLESS}:{port}", "discover": "dns", "maxConcurrent": 1}],
        "shardSize": 2, "healthCheckIntervalSeconds": 3600,  # the test refreshes by hand
    }, "t")
    async with Bridge(config, allow_embedded=False, resolver=records) as bridge:
        assert bridge.pool is not None and bridge.discovery is not None and bridge.monitor is not None
        assert records.asked == [HEADLESS]
        names = {f"gpu@{ip}" for ip in PODS}
        assert {h.name for h in bridge.pool.hosts} == names
        assert {h.url for h in bridge.pool.hosts} == {f"http://{ip}:{port}" for ip in PODS}

        # The first call spreads its shards over the pods: none has been measured, so each is taken
        # to be as fast as the others (client/dispatch.py); a pod late with its first request may see a
        # hedged copy elsewhere answer for it. Later calls follow the measured rates, which on one shared
        # CPU are noise: a pod that looked slower may get no shard of 12 texts.
        texts = [f"text number {i}" for i in range(12)]
        before = embeds_sent()
        result = await bridge.gpu.embed(texts)
        assert result.count == 12 and set(result.hosts) <= names
        assert all(a > b for a, b in zip(embeds_sent(), before, strict=True)), "every pod was sent a shard"

        status = await bridge.gpu.status()
        assert {(h.name, h.origin) for h in status.hosts} == {(n, "gpu") for n in names}

        # A pod goes away: its host leaves the pool, its health watcher stops, its client is closed.
        gone = bridge.pool.host("gpu@127.0.0.3")
        records.addresses = PODS[:2]
        await bridge.discovery.refresh()
        assert {h.name for h in bridge.pool.hosts} == names - {"gpu@127.0.0.3"}
        assert gone not in bridge.monitor._tasks
        await wait_until_async(lambda: gone.client.is_closed, message="the removed host's client should be closed")
        result = await bridge.gpu.embed(texts)
        assert result.count == 12 and result.hosts and set(result.hosts) <= names - {"gpu@127.0.0.3"}

        # It comes back: a new host for it joins, watched, and takes work again.
        records.addresses = PODS
        await bridge.discovery.refresh()
        assert {h.name for h in bridge.pool.hosts} == names
        assert {h.name for h in bridge.monitor._tasks} == names
        before = embeds_sent()
        result = await bridge.gpu.embed(texts)
        assert result.count == 12
        assert embeds_sent()[2] > before[2], "a host never measured is tried as one as fast as the fastest"


@pytest.mark.anyio
async def test_a_failed_lookup_keeps_the_hosts_the_pool_has() -> None:
    answers: list[list[str] | OSError] = [["127.0.0.1", "127.0.0.2"], OSError("Temporary failure in name resolution")]

    async def flaky(name: str) -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    config = parse_config({"hosts": [{"name": "gpu", "url": f"http://{HEADLESS}:8765", "discover": "dns"}]}, "t")
    pool = HostPool(config)
    discovery = DnsDiscovery(pool, resolver=flaky)
    await discovery.refresh()
    await discovery.refresh()
    assert {h.name for h in pool.hosts} == {"gpu@127.0.0.1", "gpu@127.0.0.2"}
    await pool.close()


@pytest.mark.anyio
async def test_a_removed_host_finishes_its_request_before_its_client_is_closed() -> None:
    # The host is an httpx.MockTransport that holds its answer until the test releases it: a real
    # service cannot be held mid-request on cue. The point is the pool's bookkeeping, not HTTP.
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={"ok": True})

    records = Records(["10.0.0.1"])
    config = parse_config({"hosts": [{"name": "gpu", "url": f"http://{HEADLESS}:8765", "discover": "dns"}]}, "t")
    pool = HostPool(config, rng=random.Random(1), transport=httpx.MockTransport(slow))
    discovery = DnsDiscovery(pool, resolver=records)
    await discovery.refresh()
    host = pool.host("gpu@10.0.0.1")
    call = asyncio.create_task(pool.request(
        "embed", lambda h: HttpCall("POST", "/embed", {}), lambda h, r: parse_json(r), deadline=pool.clock() + 30
    ))
    await wait_until_async(lambda: host.record.in_flight == 1, message="the request should reach the host")
    records.addresses = []
    await discovery.refresh()
    assert pool.hosts == []
    await run_ready_tasks()  # the retiring of the host gets every chance to close its client too early
    assert not host.client.is_closed  # its request is still running
    release.set()
    answer, served_by = await call
    assert answer == {"ok": True} and served_by is host
    await wait_until_async(lambda: host.client.is_closed, message="the client should close once its request is done")
    await pool.close()
