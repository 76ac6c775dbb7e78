"""Runs one sharded call over the pool: the lanes it may use (one per usable host that serves its task
and model, each with that host's measured rate) and what the call learns about the hosts' rates.

The dispatch policy itself is `dispatch.py`; the shard loop is `sharding.py`. This module is where both
meet the pool: which hosts become lanes, and where each host's seconds per item are kept between calls
(on the pool's host record, per kind of call and model, so an idf count never makes a BERTScore shard
look late; and per tenant, since a host that queues by tenant serves each at its own pace: a tenant with
many calls queued there sees it slower than one with a single call, and its rate must not hold the other's
shards back)."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from functools import partial
from typing import Literal, TypeVar

from mcp_bridge.client.dispatch import Lane
from mcp_bridge.client.sharding import Progress, RunShard, run_sharded
from mcp_bridge.pool.call_class import call_priority, current_class
from mcp_bridge.pool.hosts import Host, Rate
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.routing import Need, best, candidates

T = TypeVar("T")
S = TypeVar("S", bound=Sized)

Dispatch = Literal["rates", "pool"]
"""How shards find hosts: "rates" follows each host's measured rate (`client/dispatch.py`); "pool" is a
plain work queue the pool balances (the dispatch before issue 21, kept to compare against)."""


RATE_MAX_AGE_S = 60.0
"""A rate measured longer ago than this is forgotten: the host is tried again as if never measured (as
fast as the fastest), so one that was slow for a moment (a model load, another tenant, a noisy
neighbour) does not stay out of every call too small to need it."""


def lane_slots(host: Host) -> int:
    """How many of one call's shards may be out on `host` at once: 2 on a host without a limit; on a host
    with `maxConcurrent`, its slots and one more, which waits at the pool's slot gate. The slots are shared
    with every other call there (the gate hands them out in fair order, pool/fair_share.py), and a call that
    always has a shard waiting is never passed over for a slot just because its next shard was not queued
    yet when its last one finished."""
    return host.max_concurrent + 1 if host.max_concurrent else 2


def fresh_rate(host: Host, kind: str, now: float) -> float | None:
    """`host`'s seconds per item for `kind`, if it was measured within `RATE_MAX_AGE_S`."""
    rate = host.record.item_seconds.get(kind)
    return rate.seconds if rate is not None and now - rate.measured_at <= RATE_MAX_AGE_S else None


class ShardRunner:
    def __init__(self, pool: HostPool, shard_size: int, dispatch: Dispatch = "rates") -> None:
        self.pool = pool
        self.shard_size = shard_size
        self.dispatch = dispatch

    async def run(self, need: Need, items: Sequence[T], run_shard: RunShard[T, S], *, kind: str,
                  pin: str | None = None, progress: Progress | None = None, shard_size: int | None = None,
                  ) -> list[S]:
        """`run_shard` for every shard of `items`, placed by the hosts' rates; the results in order.
        `kind` names the call's kind for the rates kept (the model and the caller's tenant are added to it)."""
        size = shard_size or self.shard_size
        chosen = current_class.get()
        kind = f"{kind}:{need.model}" + (f"@{chosen.tenant}" if chosen and chosen.tenant else "")
        lanes = self.lanes(need, kind, -(-len(items) // size), pin)
        return await run_sharded(items, size, run_shard, lanes=lanes, progress=progress, clock=self.pool.clock,
                                 learned=partial(self._keep, kind))

    def lanes(self, need: Need, kind: str, shards: int, pin: str | None = None) -> list[Lane]:
        """One lane per usable host of the best routing tier (warm before allowed, routing.py), with its
        measured rate; one lane for the pool to fill (its balancer choosing) for a call of one shard, a
        pinned call, when nothing is usable (the pool panics) or with dispatch "pool"."""
        hosts = [h for h in self.pool.hosts if h.can_serve(need.task)]
        now = self.pool.clock()
        usable = best([h for h in candidates(hosts, need) if h.usable(now, call_priority())], need)
        if shards <= 1 or pin is not None or self.dispatch == "pool" or not usable:
            return [Lane(None, max(1, sum(h.max_concurrent or 2 for h in hosts)))]
        chosen = current_class.get()
        return [Lane(h.name, lane_slots(h), fresh_rate(h, kind, now), busy=partial(h.ahead_of, chosen))
                for h in usable]

    def _keep(self, kind: str, name: str, item_seconds: float) -> None:
        for host in self.pool.hosts:
            if host.name == name:
                host.record.item_seconds[kind] = Rate(item_seconds, self.pool.clock())
