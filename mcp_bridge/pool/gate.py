"""The pool's waiting room for host slots: shards wait here, in fair order (fair_share.py), for a host.

When a request ends on a host (`freed`), the slot is handed to the waiter that comes next among those the
host can serve, and held for it (`Host.reserve`) until it sends: a request arriving meanwhile finds the host
full and queues behind the waiters rather than taking the slot first. A waiter wakes on its own every
second at most (hosts come back, new ones are found, the deadline nears) and keeps its place while it waits
again. The counters (waits per class, items and refusals per tenant) are what `gpu_status` shows (views.py)
and the HTTP bridge's `GET /metrics` exports (mcp_bridge/http_api/metrics.py).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from gpu_protocol.priority import PRIORITIES, Priority
from mcp_bridge.pool.call_class import CallClass
from mcp_bridge.pool.fair_share import FairShare, Waiter
from mcp_bridge.pool.views import ClassView, SharingView, TenantView

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host

Fits = Callable[["Host"], bool]
"""Whether a waiting shard may be sent to a host (its task, its model, not yet out of its call)."""
UNCLASSED = CallClass("interactive")
"""What a request of no decided class waits as (the pool used directly, not through a call)."""


class SlotWatcher(Protocol):
    """Told when a request starts waiting for a host slot and when it has one (a sharded call's dispatch: a
    shard waiting at the gate is neither late on its host nor worth a hedged copy, which would wait too)."""

    def waiting(self) -> None: ...

    def admitted(self) -> None: ...


slot_watcher: ContextVar[SlotWatcher | None] = ContextVar("slot_watcher", default=None)
"""Set inside the task that runs one shard (sharding.py); None elsewhere."""


class Place:
    """One shard's place in the waiting room, kept across its waits until it gets a host or its call ends."""

    def __init__(self, waiter: Waiter[Fits]) -> None:
        self.waiter = waiter
        self.handed: asyncio.Future[Host] = asyncio.get_running_loop().create_future()


class SlotGate:
    def __init__(self, clock: Callable[[], float], quantum: int) -> None:
        self._clock = clock
        self._share: FairShare[Fits] = FairShare(quantum)
        self._places: dict[int, Place] = {}
        self._waits: dict[Priority, collections.deque[float]] = {p: collections.deque(maxlen=200) for p in PRIORITIES}
        self._items: collections.Counter[str] = collections.Counter()
        self._refusals: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ waiting

    def join(self, call_class: CallClass | None, items: int, fits: Fits) -> Place:
        chosen = call_class or UNCLASSED
        place = Place(Waiter(fits, chosen.priority, chosen.tenant, max(1, items), self._clock()))
        self._share.join(place.waiter)
        self._places[id(place.waiter)] = place
        return place

    async def wait(self, place: Place, timeout: float) -> Host | None:
        """The host handed to `place` (its slot held for it), or None after `timeout` (its place kept)."""
        try:
            host = await asyncio.wait_for(asyncio.shield(place.handed), timeout)
        except TimeoutError:
            return None
        host.unreserve()
        self._waits[place.waiter.priority].append(self._clock() - place.waiter.since)
        return host

    def leave(self, place: Place) -> None:
        """`place` waits no more (it got a host itself, or its call ended); a slot handed to it goes on."""
        self._share.leave(place.waiter)
        self._places.pop(id(place.waiter), None)
        if place.handed.done() and not place.handed.cancelled():
            host = place.handed.result()
            host.unreserve()
            self.freed(host)
        place.handed.cancel()

    def freed(self, host: Host) -> None:
        """A slot on `host` is free: hand it to the waiter that comes next among those `host` may serve."""
        if not host.has_capacity():
            return
        chosen = self._share.next(lambda fits: fits(host), self._clock())
        if chosen is None:
            return
        place = self._places.pop(id(chosen))
        host.reserve()
        place.handed.set_result(host)

    # ------------------------------------------------------------------ counting

    def sent(self, call_class: CallClass | None, items: int) -> None:
        self._items[(call_class or UNCLASSED).tenant] += items

    def refused(self, call_class: CallClass | None) -> None:
        self._refusals[(call_class or UNCLASSED).tenant] += 1

    def view(self) -> SharingView:
        now = self._clock()
        depth, oldest = self._share.depth(), self._share.oldest_wait(now)
        classes: dict[str, ClassView] = {p: ClassView(waiting=depth[p], oldest_wait_s=round(oldest[p], 3),
                                mean_wait_s=round(sum(w) / len(w), 3) if (w := self._waits[p]) else None,
                                waited=len(self._waits[p]))
                   for p in PRIORITIES}
        waiting = self._share.waiting_tenants()
        tenants = {t: TenantView(items=self._items[t], refusals=self._refusals[t], waiting_items=waiting.get(t, 0))
                   for t in sorted({*self._items, *self._refusals, *waiting})}
        return SharingView(classes=classes, tenants=tenants)
