"""The bridge's fair share of host slots: the pure rules (fair_share.py), the pool's waiting room (gate.py)
with `httpx.MockTransport` hosts, and the class and tenant each call carries to its hosts."""

from __future__ import annotations

import asyncio
import collections
import json
import struct
from typing import Any

import httpx
import pytest

from gpu_protocol.codec import encode_float32_rows
from gpu_protocol.embed import EmbedResponse
from gpu_protocol.priority import (
    PRIORITY_HEADER,
    TENANT_HEADER,
    ClassChooser,
    estimate_audio_seconds,
    estimate_tokens,
)
from mcp_bridge.client.client import GpuClient
from mcp_bridge.client.dispatch import Copy, Lane, hedge
from mcp_bridge.config import parse_config
from mcp_bridge.pool.call_class import CallClass, current_class
from mcp_bridge.pool.caller import Caller, current_caller
from mcp_bridge.pool.errors import PoolBusy
from mcp_bridge.pool.fair_share import FairShare, Waiter
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from tests.support.waiting import wait_until_async


def waiter(tenant: str, items: int = 64, priority: Any = "batch", since: float = 0.0, what: str = "x") -> Waiter[str]:
    return Waiter(what, priority, tenant, items, since)


def drain(share: FairShare[str], now: float = 0.0) -> list[str]:
    order = []
    while (chosen := share.next(lambda what: True, now)) is not None:
        order.append(chosen.tenant)
    return order


# --------------------------------------------------------------------------- the rules


def test_tenants_take_turns_whatever_their_number_of_waiting_shards() -> None:
    share: FairShare[str] = FairShare(quantum=64)
    for _ in range(6):
        share.join(waiter("six"))
    share.join(waiter("one"))
    share.join(waiter("one"))
    assert drain(share)[:4] == ["six", "one", "six", "one"]


def test_turns_count_items_not_shards() -> None:
    """A tenant of 256-item shards gets one shard for every four of a tenant of 64-item shards."""
    share: FairShare[str] = FairShare(quantum=64)
    for _ in range(8):
        share.join(waiter("small", items=64))
    for _ in range(2):
        share.join(waiter("big", items=256))
    order = drain(share)
    first_big = order.index("big")
    assert order[: first_big + 1].count("small") >= 3, order
    items = collections.Counter()
    for tenant in order[: order.index("big", first_big + 1) + 1]:
        items[tenant] += 64 if tenant == "small" else 256
    assert abs(items["small"] - items["big"]) <= 256, (order, items)


def test_interactive_goes_first_but_batch_keeps_its_share_and_ages() -> None:
    share: FairShare[str] = FairShare(quantum=64, chooser=ClassChooser(share_every=4, max_wait_s=10.0))
    for _ in range(8):
        share.join(waiter("bulk", priority="batch"))
        share.join(waiter("agent", items=1, priority="interactive"))
    order = [share.next(lambda what: True, 1.0) for _ in range(8)]
    assert [w.priority for w in order if w] == ["interactive"] * 3 + ["batch"] + ["interactive"] * 3 + ["batch"]
    share.join(waiter("agent", items=1, priority="interactive", since=20.0))
    aged = [share.next(lambda what: True, 20.0) for _ in range(4)]  # the last turn was batch's
    assert [w.priority for w in aged if w] == ["interactive", "batch"] * 2, "batch waiting 10 s: every other slot"


def test_a_slot_goes_only_to_a_waiter_its_host_can_serve() -> None:
    share: FairShare[str] = FairShare(quantum=64)
    share.join(waiter("a", what="rerank"))
    share.join(waiter("b", what="embed"))
    share.join(waiter("a", priority="interactive", what="rerank"))
    chosen = share.next(lambda what: what == "embed", 0.0)
    assert chosen is not None and chosen.tenant == "b"
    assert share.next(lambda what: what == "embed", 0.0) is None
    assert share.depth() == {"interactive": 1, "batch": 1}


def test_a_waiter_that_leaves_is_never_chosen() -> None:
    share: FairShare[str] = FairShare(quantum=64)
    gone, stays = waiter("a"), waiter("b")
    share.join(gone)
    share.join(stays)
    share.leave(gone)
    share.leave(gone)  # twice: no harm
    assert share.waiting_tenants() == {"b": 64}
    assert drain(share) == ["b"] and len(share) == 0


def test_the_bridge_estimates_tokens_and_audio_seconds_by_one_documented_rule() -> None:
    assert estimate_tokens(["abcd", "abcde", ""]) == 1 + 2 + 0
    assert estimate_tokens(["x" * 1200] * 4) == 1200  # four ~300-word chunks: over the interactive 1,000
    assert estimate_audio_seconds(16_000 * 90) == 90.0


# --------------------------------------------------------------------------- the pool's waiting room


def one_slot_pool(release: asyncio.Event, seen: list[dict[str, str]], hosts: int = 1) -> HostPool:
    async def held(request: httpx.Request) -> httpx.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        await release.wait()
        release.clear()
        return httpx.Response(200, json={})

    config = parse_config({"hosts": [{"name": f"h{i}", "url": f"http://h{i}.test", "maxConcurrent": 1}
                                     for i in range(hosts)], "shardSize": 64}, "t")
    return HostPool(config, transport=httpx.MockTransport(held))


async def classed_call(pool: HostPool, call_class: CallClass, items: int = 64, within: float = 30.0) -> str:
    current_class.set(call_class)  # a task of its own: its context is its own
    await pool.request("embed", lambda h: HttpCall("POST", "/embed", {}), lambda h, r: None,
                       deadline=pool.clock() + within, items=items)
    return call_class.tenant


@pytest.mark.anyio
async def test_freed_slots_go_to_tenants_in_turn_and_interactive_first() -> None:
    release = asyncio.Event()
    seen: list[dict[str, str]] = []
    pool = one_slot_pool(release, seen)
    first = asyncio.create_task(classed_call(pool, CallClass("batch", "six")))
    await wait_until_async(lambda: len(seen) == 1, message="the first request holds the only slot")
    many = [asyncio.create_task(classed_call(pool, CallClass("batch", "six"))) for _ in range(5)]
    one = [asyncio.create_task(classed_call(pool, CallClass("batch", "one"))) for _ in range(2)]
    await wait_until_async(lambda: len(pool.gate._share) == 7, message="seven requests wait at the gate")
    agent = asyncio.create_task(classed_call(pool, CallClass("interactive", "agent"), items=1))
    await wait_until_async(lambda: len(pool.gate._share) == 8, message="the agent's call waits too")
    view = pool.snapshot().sharing
    assert view is not None and view.classes["batch"].waiting == 7 and view.classes["interactive"].waiting == 1
    assert view.tenants["six"].waiting_items == 5 * 64
    for handed in range(2, 10):
        release.set()
        await wait_until_async(lambda n=handed: len(seen) == n, message="the freed slot is handed on")
    release.set()
    await asyncio.gather(first, *many, *one, agent)
    order = [h.get(TENANT_HEADER.lower()) for h in seen]
    assert order[1] == "agent", order
    assert order[2:6] == ["six", "one", "six", "one"], order
    assert [h.get(PRIORITY_HEADER.lower()) for h in seen].count("interactive") == 1
    done = pool.snapshot().sharing
    assert done is not None and done.tenants["six"].items == 6 * 64 and done.tenants["one"].items == 2 * 64
    assert done.classes["batch"].waiting == 0 and done.classes["batch"].waited == 7
    await pool.close()


@pytest.mark.anyio
async def test_a_waiter_that_gives_up_passes_its_slot_on() -> None:
    release = asyncio.Event()
    seen: list[dict[str, str]] = []
    pool = one_slot_pool(release, seen)
    holder = asyncio.create_task(classed_call(pool, CallClass("batch", "a")))
    await wait_until_async(lambda: len(seen) == 1, message="the slot is held")
    quitter = asyncio.create_task(classed_call(pool, CallClass("batch", "b")))
    stayer = asyncio.create_task(classed_call(pool, CallClass("batch", "c")))
    await wait_until_async(lambda: len(pool.gate._share) == 2, message="two wait")
    quitter.cancel()
    release.set()
    await asyncio.gather(holder)
    await wait_until_async(lambda: len(seen) == 2, message="the stayer gets the slot")
    release.set()
    await stayer
    assert pool.host("h0").record.reserved == 0 and pool.host("h0").record.in_flight == 0
    await pool.close()


@pytest.mark.anyio
async def test_a_busy_refusal_is_counted_for_its_tenant() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "1"}, json={"detail": "busy"})

    config = parse_config({"hosts": [{"name": "h", "url": "http://h.test"}], "retryBudgetPercent": 0}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(busy))
    with pytest.raises(PoolBusy):
        await classed_call(pool, CallClass("batch", "loud"), within=0.3)
    view = pool.snapshot().sharing
    assert view is not None and view.tenants["loud"].refusals == 1
    await pool.close()


# --------------------------------------------------------------------------- each call's class, to its hosts


def recording_client(shard_size: int = 64) -> tuple[GpuClient, list[tuple[str, dict[str, str], int]]]:
    seen: list[tuple[str, dict[str, str], int]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        texts = body.get("texts") or body.get("input")
        seen.append((request.url.host, {k.lower(): v for k, v in request.headers.items()}, len(texts)))
        if request.url.path == "/v1/embeddings":
            return httpx.Response(200, json={"data": [{"embedding": [1.0, 0.0], "index": i}
                                                      for i in range(len(texts))]})
        blob = encode_float32_rows(struct.pack(f"<{2 * len(texts)}f", *[1.0, 0.0] * len(texts)))
        return httpx.Response(200, json=EmbedResponse(model="m", dimensions=2, count=len(texts), truncated=0,
                                                      embeddings_base64=blob).model_dump(exclude_none=True))

    config = parse_config({"hosts": [{"name": "ours", "url": "http://ours.test"},
                                     {"name": "theirs", "url": "http://theirs.test", "type": "openai", "model": "m"}],
                           "shardSize": shard_size}, "t")
    return GpuClient(config, HostPool(config, transport=httpx.MockTransport(answer))), seen


def classes_sent(seen: list[tuple[str, dict[str, str], int]]) -> set[str | None]:
    return {headers.get(PRIORITY_HEADER.lower()) for host, headers, _ in seen if host == "ours.test"}


@pytest.mark.anyio
async def test_a_call_is_classed_once_for_all_its_shards_and_hosts_of_ours_are_told() -> None:
    gpu, seen = recording_client()
    await gpu.embed(["a short text"] * 256)
    assert len([s for s in seen if s[0] == "ours.test"]) >= 1 and classes_sent(seen) == {"batch"}, seen
    assert all(PRIORITY_HEADER.lower() not in h and TENANT_HEADER.lower() not in h
               for host, h, _ in seen if host == "theirs.test"), "openai hosts are not told"
    seen.clear()
    await gpu.embed(["a query"] * 2)
    assert classes_sent(seen) <= {"interactive"}
    seen.clear()
    await gpu.embed(["a chunk"] * 2, input_type="document")
    assert classes_sent(seen) <= {"batch"}
    await gpu.pool.close()


@pytest.mark.anyio
async def test_the_callers_class_and_tenant_travel_within_what_it_may_use() -> None:
    gpu, seen = recording_client()
    token = current_caller.set(Caller(tenant="indexer", highest="batch", asked="interactive"))
    try:
        for _ in range(16):  # enough calls that ours serves some (each goes to either host; 4 missed it once)
            await gpu.embed(["one query"])
    finally:
        current_caller.reset(token)
    ours = [h for host, h, _ in seen if host == "ours.test"]
    assert ours and {h.get(PRIORITY_HEADER.lower()) for h in ours} == {"batch"}
    assert {h.get(TENANT_HEADER.lower()) for h in ours} == {"indexer"}
    seen.clear()
    for _ in range(4):
        await gpu.embed(["one query"])
    assert all(TENANT_HEADER.lower() not in h for host, h, _ in seen), "no tenant: no header"
    await gpu.pool.close()


def test_a_shard_waiting_for_a_slot_is_neither_late_nor_hedged() -> None:
    """A copy waiting at the pool's gate is on no host: a hedged twin would only wait at the same gate."""
    held, free = Lane("a", 1, item_seconds=0.01), Lane("b", 1, item_seconds=0.01)
    waiting = Copy(0, 64, started=0.0, admitted=False)
    held.running.append(waiting)
    assert held.finishes(100.0, 0.01)[0] == pytest.approx(100.64), "counted from now, not from when it queued"
    assert hedge([held, free], 100.0, set()) is None
    waiting.admitted = True  # on its host for 100 s: clearly late, a copy on the free lane is worth it
    assert hedge([held, free], 100.0, set()) is not None
