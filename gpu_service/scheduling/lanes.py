"""The scheduler's waiting room: a queue per priority class and, within a class, a queue per tenant.

Items of one class are taken round-robin across tenants, one item at a time, so a caller with many
connections (or one huge request) does not crowd out another. Before every batch the scheduler asks
`ClassChooser` (gpu_protocol.priority: the bridge shares its host slots by the same rule) which class runs
next: interactive work goes first, but while both classes wait, batch keeps a guaranteed share of the
batches (it is never starved) and, once an item of it has waited too long, every other batch (it ages).
"""

from __future__ import annotations

import collections
import contextvars
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from gpu_protocol.priority import Priority

T = TypeVar("T")

@dataclass(frozen=True)
class Lane:
    """Where a request's items queue: its class and its tenant ("" when nobody said)."""

    priority: Priority = "interactive"
    tenant: str = ""


@dataclass(frozen=True)
class AskedLane:
    """What the caller asked for: a class (None: decided by the request's size), its tenant, and when it stops
    waiting for the answer (a `time.monotonic()` time; None: it did not say)."""

    priority: Priority | None = None
    tenant: str = ""
    deadline: float | None = None


asked_lane: contextvars.ContextVar[AskedLane | None] = contextvars.ContextVar("asked_lane", default=None)
"""Set by the HTTP layer for the request being served (its headers); read where the request's work queues."""


def lane_for(by_size: Priority) -> Lane:
    """The lane of the request being served: the class its caller asked for, else `by_size`; its tenant."""
    asked = asked_lane.get() or AskedLane()
    return Lane(asked.priority or by_size, asked.tenant)


def deadline_for(timeout_s: float) -> float:
    """When the request being served must be answered: within the service's own `timeout_s`
    (GPU_REQUEST_TIMEOUT), sooner where its caller stops waiting sooner."""
    own = time.monotonic() + timeout_s
    asked = asked_lane.get()
    return own if asked is None or asked.deadline is None else min(own, asked.deadline)


class TenantQueue(Generic[T]):
    """Items in arrival order per tenant; `pop` serves the tenants in turn, one item each."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, collections.deque[tuple[float, T]]] = {}
        self._turn: collections.deque[str] = collections.deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, tenant: str, items: Iterable[T]) -> None:
        queue = self._by_tenant.get(tenant)
        if queue is None:
            queue = self._by_tenant[tenant] = collections.deque()
            self._turn.append(tenant)
        now = time.monotonic()
        before = len(queue)
        queue.extend((now, item) for item in items)
        self._count += len(queue) - before

    def put_back(self, tenant: str, items: list[tuple[float, T]]) -> None:
        """Items taken but not run (with the time each was queued), back at the head of their tenant's queue."""
        queue = self._by_tenant.get(tenant)
        if queue is None:
            queue = self._by_tenant[tenant] = collections.deque()
            self._turn.append(tenant)
        queue.extendleft(reversed(items))
        self._count += len(items)

    def __iter__(self) -> Iterator[T]:
        """Every waiting item, tenant by tenant (not in serving order)."""
        return (item for queue in self._by_tenant.values() for _, item in queue)

    def pop(self) -> T:
        """The next tenant's oldest item (IndexError when empty)."""
        return self.pop_timed()[2]

    def pop_timed(self) -> tuple[str, float, T]:
        """The next tenant's oldest item, with its tenant and the time it was queued."""
        tenant = self._turn[0]
        queue = self._by_tenant[tenant]
        queued_at, item = queue.popleft()
        self._count -= 1
        if queue:
            self._turn.rotate(-1)
        else:
            self._turn.popleft()
            del self._by_tenant[tenant]
        return tenant, queued_at, item

    def oldest_wait(self, now: float) -> float:
        """How long the longest-waiting item has waited (0 when empty)."""
        return max((now - queue[0][0] for queue in self._by_tenant.values()), default=0.0)

    def tenants(self) -> dict[str, int]:
        return {tenant: len(queue) for tenant, queue in self._by_tenant.items()}

    def drain(self) -> Iterator[T]:
        while self._count:
            yield self.pop()
