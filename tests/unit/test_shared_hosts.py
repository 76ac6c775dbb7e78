"""How a sharded call sees hosts that several tenants share (issue 28): at a host that queues by class and
tenant, only its own tenant's work (and interactive work) is ahead of a batch call's shards, and each tenant
keeps its own measure of a host's pace. Hosts are httpx MockTransports (no network exists here)."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from gpu_protocol.priority import PRIORITY_HEADER
from mcp_bridge.client.client import GpuClient
from mcp_bridge.client.shard_runner import ShardRunner
from mcp_bridge.config import parse_config
from mcp_bridge.pool.call_class import CallClass
from mcp_bridge.pool.caller import Caller, current_caller
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.routing import Need


def embed_hosts(queues_by_class: set[str]) -> httpx.MockTransport:
    """gpu-service's /embed answer; the hosts in `queues_by_class` name the class the request queued in, as a
    service with class and tenant queues does (a 0.4.0 service does not)."""

    def handle(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        rows = np.zeros((len(texts), 2), dtype=np.float32)
        body = {"model": "m", "dimensions": 2, "count": len(texts), "truncated": 0,
                "embeddings_base64": base64.b64encode(rows.tobytes()).decode()}
        said = request.headers.get(PRIORITY_HEADER, "interactive")
        headers = {PRIORITY_HEADER: said} if request.url.host.split(".")[0] in queues_by_class else {}
        return httpx.Response(200, json=body, headers=headers)

    return httpx.MockTransport(handle)


def two_host_pool(queues_by_class: set[str]) -> tuple[GpuClient, HostPool]:
    config = parse_config({"hosts": [{"name": "fair", "url": "http://fair.test:1"},
                                     {"name": "fifo", "url": "http://fifo.test:1"}], "shardSize": 64}, "t")
    pool = HostPool(config, transport=embed_hosts(queues_by_class))
    return GpuClient(config, pool), pool


@pytest.mark.anyio
async def test_only_a_host_that_names_the_class_its_request_queued_in_is_taken_to_queue_by_tenant() -> None:
    gpu, pool = two_host_pool({"fair"})
    try:
        await gpu.embed([f"text {i}" for i in range(256)])  # four shards: both hosts answer some
        fair, fifo = pool.host("fair"), pool.host("fifo")
        assert fair.described.queues_by_class and not fifo.described.queues_by_class
        indexer, other = CallClass("batch", "indexer"), CallClass("batch", "other")
        for host in (fair, fifo):
            for chosen in (indexer, indexer, other, other, other, CallClass("interactive", "agent")):
                host.request_started(chosen)
        # At the fair host the indexer waits behind its own two requests and the interactive one, not the other
        # tenant's three; first come, first served puts all six ahead of it.
        assert fair.ahead_of(indexer) == 3 and fair.ahead_of(other) == 4
        assert fifo.ahead_of(indexer) == fifo.ahead_of(other) == 6
        assert fair.ahead_of(CallClass("interactive", "agent")) == 1  # batch work is not ahead of interactive
        fair.request_finished(indexer)
        assert fair.ahead_of(indexer) == 2 and fair.record.in_flight == 5
    finally:
        await pool.close()


@pytest.mark.anyio
async def test_each_tenant_keeps_its_own_measure_of_a_hosts_pace() -> None:
    """A tenant with many calls queued at a host sees it slower than one with a single call: its measure must
    not hold the other tenant's shards back from that host."""
    gpu, pool = two_host_pool({"fair", "fifo"})
    try:
        token = current_caller.set(Caller(tenant="indexer", highest="batch"))
        try:
            await gpu.embed([f"text {i}" for i in range(256)])
        finally:
            current_caller.reset(token)
        kinds = set(pool.host("fair").record.item_seconds) | set(pool.host("fifo").record.item_seconds)
        assert kinds == {"embed:None@indexer"}, kinds
        runner = ShardRunner(pool, shard_size=64)
        assert all(lane.item_seconds is None for lane in runner.lanes(Need("embed"), "embed:None@agent", 4))
        assert any(lane.item_seconds is not None for lane in runner.lanes(Need("embed"), "embed:None@indexer", 4))
    finally:
        await pool.close()
