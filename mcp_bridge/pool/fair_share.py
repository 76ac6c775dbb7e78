"""Who gets the next free host slot: the bridge's fair share among the shards waiting for one.

A shard that finds every host it may use full (`maxConcurrent`) waits here instead of racing every other
waiter for the next slot. Waiters queue per class, then per tenant:

- **The class** is chosen as the service chooses its next batch (gpu_protocol.priority.ClassChooser):
  interactive first, while batch keeps a guaranteed share of the slots, every other one once it has waited
  `BATCH_MAX_WAIT_S`.
- **Within a class, tenants in turn by items**: deficit round robin. Each tenant's turn adds `quantum`
  items to its credit; it is given slots while its oldest waiting shard fits its credit, then the next
  tenant's turn comes. A tenant with six clients gets no more slots than a tenant with one; a tenant sending
  shards of 64 texts gets as many texts as one sending shards of 256, not four times as many.

Only waiters whose shard the freed host can serve (`fits`) are considered, so a slot on an embeddings host
never goes to a rerank shard. This module is pure bookkeeping (no clock, no waiting): `gate.py` does the
waiting and hands the slots out.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gpu_protocol.priority import PRIORITIES, ClassChooser, Priority

W = TypeVar("W")


@dataclass
class Waiter(Generic[W]):
    """One shard waiting for a slot: what it is (for `fits`), its class, tenant and size, since when."""

    what: W
    priority: Priority
    tenant: str
    items: int
    since: float


@dataclass
class _ClassQueue(Generic[W]):
    by_tenant: dict[str, collections.deque[Waiter[W]]] = field(default_factory=dict)
    turn: collections.deque[str] = field(default_factory=collections.deque)
    """Tenants in round-robin order; the first one's turn is on."""
    credit: dict[str, int] = field(default_factory=dict)
    turn_started: bool = False


class FairShare(Generic[W]):
    def __init__(self, quantum: int, chooser: ClassChooser | None = None) -> None:
        self.quantum = max(1, quantum)
        self._chooser = chooser or ClassChooser()
        self._classes: dict[Priority, _ClassQueue[W]] = {p: _ClassQueue() for p in PRIORITIES}

    def __len__(self) -> int:
        return sum(self.depth().values())

    def join(self, waiter: Waiter[W]) -> None:
        queue = self._classes[waiter.priority]
        if waiter.tenant not in queue.by_tenant:
            queue.by_tenant[waiter.tenant] = collections.deque()
            queue.turn.append(waiter.tenant)
            queue.credit[waiter.tenant] = 0
        queue.by_tenant[waiter.tenant].append(waiter)

    def leave(self, waiter: Waiter[W]) -> None:
        """`waiter` no longer waits (it got a slot some other way, gave up, or its call ended)."""
        queue = self._classes[waiter.priority]
        waiting = queue.by_tenant.get(waiter.tenant)
        if waiting is None or waiter not in waiting:
            return
        waiting.remove(waiter)
        if not waiting:
            self._drop_tenant(queue, waiter.tenant)

    def next(self, fits: Callable[[W], bool], now: float) -> Waiter[W] | None:
        """The waiter that gets a freed slot (it leaves the queue), among those that `fits` it; None if none fits."""
        fitting = {p: self._fitting(p, fits) for p in PRIORITIES}
        batch_waited = max((now - w.since for w in fitting["batch"]), default=0.0)
        chosen = self._chooser.choose({p: bool(found) for p, found in fitting.items()}, batch_waited)
        if chosen is None:
            return None
        waiter = self._next_in_class(self._classes[chosen], fits)
        self.leave(waiter)
        return waiter

    def depth(self) -> dict[Priority, int]:
        """Shards waiting per class."""
        return {p: sum(len(w) for w in q.by_tenant.values()) for p, q in self._classes.items()}

    def oldest_wait(self, now: float) -> dict[Priority, float]:
        """Per class, how long its longest-waiting shard has waited (0 when none waits)."""
        return {p: max((now - w[0].since for w in q.by_tenant.values() if w), default=0.0)
                for p, q in self._classes.items()}

    def waiting_tenants(self) -> dict[str, int]:
        """Items waiting per tenant, over both classes."""
        out: dict[str, int] = collections.Counter()
        for queue in self._classes.values():
            for tenant, waiting in queue.by_tenant.items():
                out[tenant] += sum(w.items for w in waiting)
        return dict(out)

    # ------------------------------------------------------------------ inside

    def _fitting(self, priority: Priority, fits: Callable[[W], bool]) -> list[Waiter[W]]:
        return [w for waiting in self._classes[priority].by_tenant.values() for w in waiting if fits(w.what)]

    def _next_in_class(self, queue: _ClassQueue[W], fits: Callable[[W], bool]) -> Waiter[W]:
        """Deficit round robin over the class's tenants that have a fitting waiter (the caller checked one has)."""
        while True:
            tenant = queue.turn[0]
            first = next((w for w in queue.by_tenant[tenant] if fits(w.what)), None)
            if first is not None:
                if not queue.turn_started:
                    queue.credit[tenant] += self.quantum
                    queue.turn_started = True
                if first.items <= queue.credit[tenant]:
                    queue.credit[tenant] -= first.items
                    return first
            queue.turn.rotate(-1)
            queue.turn_started = False

    def _drop_tenant(self, queue: _ClassQueue[W], tenant: str) -> None:
        del queue.by_tenant[tenant]
        del queue.credit[tenant]
        if queue.turn and queue.turn[0] == tenant:
            queue.turn_started = False
        queue.turn.remove(tenant)
