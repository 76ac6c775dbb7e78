"""A host's 429 to a batch call cools it down for batch calls only (mcp_bridge/pool/hosts.py `cool_down`):
its batch queue is full, its interactive queue has a cap of its own, so interactive calls still go there.
`httpx.MockTransport` hosts and a hand-driven clock."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from gpu_protocol.priority import PRIORITY_HEADER, Priority
from mcp_bridge.config import parse_config
from mcp_bridge.pool.call_class import CallClass, current_class
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from mcp_bridge.protocols.answers import parse_json
from tests.unit.test_pool import Clock


def full_for(*classes: str) -> Any:
    """A host whose queues of `classes` are full: 429 with Retry-After 30 to calls of those classes."""
    def answer(request: httpx.Request) -> httpx.Response:
        answer.calls += 1  # type: ignore[attr-defined]
        if request.headers.get(PRIORITY_HEADER, "interactive") in classes:
            return httpx.Response(429, json={"detail": "queue full"}, headers={"Retry-After": "30"})
        return httpx.Response(200, json={"ok": True})
    answer.calls = 0  # type: ignore[attr-defined]
    return answer


def pool_of(first: Any, first_type: str = "gpu-service") -> HostPool:
    handlers = {"full": first, "free": full_for()}
    hosts: list[dict[str, Any]] = [{"name": "full", "url": "http://full.test", "type": first_type},
                                   {"name": "free", "url": "http://free.test"}]
    if first_type == "openai":
        hosts[0]["model"] = "m"
    clock = Clock()
    return HostPool(parse_config({"hosts": hosts}, "t"), clock=clock, rng=random.Random(3), sleep=clock.sleep,
                    transport=httpx.MockTransport(lambda r: handlers[r.url.host.split(".")[0]](r)))


async def served_by(pool: HostPool, priority: Priority) -> str:
    """Which host serves a call of `priority` that would go to `full` first if it may."""
    token = current_class.set(CallClass(priority))
    try:
        _, host = await pool.request("embed", lambda h: HttpCall("POST", "/embed", {}),
                                     lambda h, r: parse_json(r), deadline=pool.clock() + 60, prefer="full")
    finally:
        current_class.reset(token)
    return host.name


@pytest.mark.anyio
async def test_a_batch_queue_full_429_leaves_the_host_to_interactive_calls() -> None:
    full = full_for("batch")
    pool = pool_of(full)
    assert await served_by(pool, "batch") == "free" and full.calls == 1, "refused there: retried on the other host"
    assert await served_by(pool, "interactive") == "full", "its interactive queue has room: still used"
    assert await served_by(pool, "batch") == "free" and full.calls == 2, "batch calls leave it alone while it cools"
    view = {h.name: h for h in pool.snapshot().hosts}["full"]
    assert view.state == "healthy" and view.batch_cooling_s == pytest.approx(30, abs=1)
    pool.clock.now += 31  # type: ignore[attr-defined]
    assert pool.host("full").usable(pool.clock(), "batch"), "the cool-down ends"
    await pool.close()


@pytest.mark.anyio
async def test_an_interactive_429_still_cools_the_whole_host() -> None:
    pool = pool_of(full_for("interactive", "batch"))
    assert await served_by(pool, "interactive") == "free"
    assert await served_by(pool, "interactive") == "free"
    assert await served_by(pool, "batch") == "free"
    assert {h.name: h.state for h in pool.snapshot().hosts}["full"] == "cooling-down"
    await pool.close()


@pytest.mark.anyio
async def test_a_host_that_knows_no_classes_cools_down_whole() -> None:
    """An OpenAI-compatible host is told no class: its 429 is about everything it serves."""
    full = full_for("interactive", "batch")
    pool = pool_of(full, first_type="openai")
    assert await served_by(pool, "batch") == "free" and full.calls == 1
    assert await served_by(pool, "interactive") == "free" and full.calls == 1, "not tried again while it cools"
    await pool.close()
