"""One priority class's queue in a model's scheduler: its tenants' waiting items, and the round of batches
formed from the oldest of them.

A round takes the class's oldest waiting items, tenants in turn (`lanes.TenantQueue`), sorts them by length and
cuts them where padding would cost more than another forward pass (`batch_plan.py`), so texts of similar length
share a batch whichever requests they came from. A round runs to its end before newer items are looked at, so no
item waits longer than one round behind later arrivals of its class; except that a tenant whose request arrives
while the round holds little or nothing of it has the round formed again at the next batch, so its items are
served in turn with the others' rather than after them. How big a round and its batches may be is the
scheduler's to say (`RoundShape`, from its measured pace and the tenants waiting).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gpu_service.scheduling.jobs import Job
from gpu_service.scheduling.lanes import TenantQueue

P = TypeVar("P")


@dataclass
class Item(Generic[P]):
    """One text (or sentence, or audio chunk) waiting for a batch, with what it costs in tokens."""

    payload: P
    cost: int
    future: asyncio.Future[Any]
    job: Job | None
    tenant: str = ""
    queued_at: float = 0.0
    """Its tenant and when it was queued: set when a round takes it, so a round given back puts it back as it was."""
    counted: bool = True
    """Still in its class's count and tokens (an item whose caller stopped waiting leaves them at once, the queue
    itself when its turn comes)."""


@dataclass(frozen=True)
class RoundShape:
    """How much a round may take, and how its batches are cut."""

    most_items: int
    most_tokens: float
    """The round's tokens at most (inf: bounded by items only)."""
    cut: Callable[[list[int]], list[int]]
    """The sizes of consecutive batches for the round's costs, sorted ascending."""
    longest_first: bool = False
    """Run the round's batches longest first (several workers then finish together)."""


class ClassQueue(Generic[P]):
    """The waiting items of one class, and the batches of its current round; counts items and their tokens."""

    def __init__(self) -> None:
        self._waiting: TenantQueue[Item[P]] = TenantQueue()
        self._round: collections.deque[list[Item[P]]] = collections.deque()
        self._arrived: set[str] = set()
        """The tenants whose items arrived since the round was formed (or last looked at)."""
        self.count = 0
        """Items accepted and not yet started (or dropped)."""
        self.tokens = 0
        """Their tokens."""

    def __bool__(self) -> bool:
        return bool(self._waiting or self._round)

    def push(self, tenant: str, items: list[Item[P]]) -> None:
        self._waiting.push(tenant, items)
        self.count += len(items)
        self.tokens += sum(item.cost for item in items)
        self._arrived.add(tenant)

    def waiting(self) -> Iterator[Item[P]]:
        """The items not yet in a round."""
        return iter(self._waiting)

    def oldest_wait(self, now: float) -> float:
        return self._waiting.oldest_wait(now)

    def items_by_tenant(self) -> collections.Counter[str]:
        """Items queued per tenant, waiting or in the round."""
        counts = collections.Counter(self._waiting.tenants())
        counts.update(item.tenant for batch in self._round for item in batch)
        return counts

    def next_batch(self, shape: Callable[[int], RoundShape]) -> list[Item[P]] | None:
        """The round's next batch, after forming a new round (shaped by `shape(tenants waiting)`) if it is over or
        leaves out a tenant that arrived; None when nothing waits. Items cancelled or timed out while they waited
        are dropped here, never run, so the batch may come back empty."""
        if self._round and self._arrived and self._leaves_out():
            self._give_back()  # a tenant that arrived has too little of the round: it joins now
        self._arrived.clear()
        if not self._round:
            self._form(shape(len(self._waiting.tenants())))
            if not self._round:
                return None
        batch = self._round.popleft()
        self._dequeued(batch)
        return [item for item in batch if not item.future.done()]

    def abandoned(self, items: list[Item[P]]) -> None:
        """Nobody waits for `items` any more (a request's, all its futures done): those still queued leave the count
        and tokens now, so the backlog a caller is told is the live one; the queue drops them when their turn comes."""
        self._dequeued(items)

    def drain(self) -> list[Item[P]]:
        """Every queued item, taken out (the scheduler is closing)."""
        items = [*self._waiting.drain(), *(item for batch in self._round for item in batch)]
        self._round.clear()
        self._dequeued(items)
        return items

    def _dequeued(self, items: list[Item[P]]) -> None:
        for item in items:
            if item.counted:
                item.counted = False
                self.count -= 1
                self.tokens -= item.cost

    def _form(self, shape: RoundShape) -> None:
        """Take the oldest waiting items, tenants in turn, sort them by length, cut them into batches."""
        items: list[Item[P]] = []
        tokens = 0
        while self._waiting and len(items) < shape.most_items and tokens < shape.most_tokens:
            tenant, queued_at, item = self._waiting.pop_timed()
            item.tenant, item.queued_at = tenant, queued_at
            if item.future.done():  # cancelled or timed out before it started
                self._dequeued([item])
                continue
            items.append(item)
            tokens += item.cost
        items.sort(key=lambda item: item.cost)  # stable: equal lengths keep their arrival order
        batches, start = [], 0
        for size in shape.cut([item.cost for item in items]):
            batches.append(items[start:start + size])
            start += size
        self._round.extend(reversed(batches) if shape.longest_first else batches)

    def _leaves_out(self) -> bool:
        """Whether a tenant whose items arrived since the round was formed holds less than half of an even share
        of what is left of the round: a tenant new to it (none), or one whose few items from its last request
        sort to the round's end while its next request waits for the round to be over."""
        in_round = collections.Counter(item.tenant for batch in self._round for item in batch)
        waiting = self._waiting.tenants()
        even = sum(in_round.values()) / max(1, len(in_round.keys() | waiting.keys()))
        return any(in_round[tenant] < even / 2 for tenant in self._arrived if tenant in waiting)

    def _give_back(self) -> None:
        """The round's unstarted items, back at the head of their tenants' queues (ages kept), so the next round
        serves a tenant that arrived meanwhile in turn with the others rather than after them."""
        by_tenant: dict[str, list[tuple[float, Item[P]]]] = {}
        for item in sorted((i for batch in self._round for i in batch), key=lambda i: i.queued_at):
            by_tenant.setdefault(item.tenant, []).append((item.queued_at, item))
        self._round.clear()
        for tenant, items in by_tenant.items():
            self._waiting.put_back(tenant, items)
