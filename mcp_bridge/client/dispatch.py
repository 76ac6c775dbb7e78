"""Which host runs which shard of a sharded call: follow what each host actually delivers.

Each host the call may use is a `Lane`: how many shards it may hold at once (its slots) and
its measured seconds per item (learned from the shards it served, kept on the pool's host
between calls). A host is modelled as working through its shards one after another at that
rate, so its queue drains at a time we can estimate.

- `starts`: when slots are free, the shards still waiting are planned greedily, each onto the
  lane where it would finish first; a free lane that gets at least one in that plan starts one
  now. A slow host is therefore given work only while there is enough of it that the fast one
  cannot finish it all sooner alone, and never the last shard when the fast one would finish it
  first: the slowest host does not set the call's time.
- `hedge`: once nothing waits, a free lane that would finish a shard another host still holds
  sooner than that host is expected to (an estimate that grows as the holder runs late) runs a
  copy of it; the first answer wins and the other copy is cancelled.
- A lane named None is "whatever the pool picks": one such lane with all the slots is the plain
  work queue that the pool balances (a pinned call, or a pool with no usable host).
Without any measurement every host is assumed equally fast; a host never measured is assumed
as fast as the fastest one measured, so it gets tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

LEARN_WEIGHT = 0.3
"""Weight of a new measurement in a host's seconds per item (an exponentially weighted average)."""
HEDGE_MARGIN = 0.5
"""A copy must be expected to finish earlier by at least half its own run time: a second copy is extra
work for a host, worth it on a clearly slower or clearly late host, not on estimates' noise."""
MIN_WAKE_S = 0.005
MAX_WAKE_S = 1.0


@dataclass
class Copy:
    """One run of a shard on a lane (a shard runs twice at most: once, and once hedged)."""

    shard: int
    size: int
    started: float
    """When its host began on it: when it was sent, or when it got a host slot after waiting for one."""
    admitted: bool = True
    """False while it waits for a host slot at the pool's gate (pool/gate.py): it is on no host yet."""


@dataclass
class Lane:
    name: str | None
    """The host to send to first (None: the pool picks)."""
    slots: int
    item_seconds: float | None = None
    """Measured seconds per item while this host is kept busy; None until measured."""
    running: list[Copy] = field(default_factory=list)
    """Its copies in flight, in the order they were started."""
    last_done: float = float("-inf")
    """When its last copy finished (or its first was cancelled): the host moved on to the next."""
    busy: Callable[[], int] | None = None
    """Requests in flight on the host (the pool's count, this call's included) that this call's shards wait
    behind: other calls' work is counted as queued ahead of this call's, a shard's worth each. At a host
    that queues by class and tenant, only its own class and tenant's (pool/hosts.py `ahead_of`)."""

    def free(self) -> int:
        return max(0, self.slots - len(self.running))

    def finishes(self, now: float, cost: float) -> list[float]:
        """When each running copy is expected to finish (the host works through them in order).

        Once the first is late, the rest are assumed to run as late again as it already is."""
        if not self.running:
            return []
        first = self.running[0]
        t = max(self.last_done, first.started if first.admitted else now)
        out = []
        for copy in self.running:
            t += cost * copy.size
            out.append(t)
        late = now - out[0]
        return [f + 2 * late for f in out] if late > 0 else out

    def drain(self, now: float, cost: float, size: int = 0) -> float:
        """When it is expected to have finished all it holds (now if it holds nothing), and other
        calls' requests (`size` items each)."""
        others = max(0, self.busy() - len(self.running)) if self.busy is not None else 0
        return max([now, *self.finishes(now, cost)]) + others * cost * size


def cost(lane: Lane, lanes: Sequence[Lane]) -> float:
    """`lane`'s seconds per item; an unmeasured host is assumed as fast as the fastest one measured."""
    if lane.item_seconds is not None:
        return lane.item_seconds
    known = [other.item_seconds for other in lanes if other.item_seconds is not None]
    return min(known) if known else 1.0


def plan(lanes: Sequence[Lane], sizes: Sequence[int], now: float) -> list[int]:
    """How many of the waiting shards (`sizes`) each lane would get, each placed where it finishes first."""
    costs = [cost(lane, lanes) for lane in lanes]
    typical = max(sizes, default=0)
    ends = [lane.drain(now, c, typical) for lane, c in zip(lanes, costs, strict=True)]
    counts = [0] * len(lanes)
    for size in sizes:
        best = min(range(len(lanes)), key=lambda i: (ends[i] + costs[i] * size, costs[i], i))
        ends[best] += costs[best] * size
        counts[best] += 1
    return counts


def starts(lanes: Sequence[Lane], sizes: Sequence[int], now: float) -> list[Lane]:
    """The lanes to start the next waiting shards on now, in order (free lanes the plan gives work)."""
    chosen: list[Lane] = []
    for lane, count in zip(lanes, plan(lanes, sizes, now), strict=True):
        chosen += [lane] * min(count, lane.free())
    return chosen[: len(sizes)]


def hedge(lanes: Sequence[Lane], now: float, hedged: set[int]) -> tuple[Copy, Lane] | None:
    """A running copy (of a shard not in `hedged`) that a free lane would finish clearly sooner, and
    that lane; the one that gains the most. None if no copy is worth a second run."""
    best: tuple[float, Copy, Lane] | None = None
    for free in (lane for lane in lanes if lane.free()):
        mine = cost(free, lanes)
        for other in lanes:
            if other is free:
                continue
            for copy, finish in zip(other.running, other.finishes(now, cost(other, lanes)), strict=True):
                if not copy.admitted:
                    continue  # waiting for a slot: a copy of it would wait at the same gate
                run = mine * copy.size
                gain = finish - (free.drain(now, mine, copy.size) + run)
                if copy.shard not in hedged and gain > HEDGE_MARGIN * run and (best is None or gain > best[0]):
                    best = (gain, copy, free)
    return None if best is None else (best[1], best[2])


def wake_in(lanes: Sequence[Lane], now: float) -> float | None:
    """How long to wait for a finished copy before looking again (estimates change as copies run late)."""
    ahead = [f - now for lane in lanes for f in lane.finishes(now, cost(lane, lanes)) if f > now]
    if not any(lane.running for lane in lanes):
        return None
    return min(MAX_WAKE_S, max(MIN_WAKE_S, min(ahead, default=MAX_WAKE_S)))


def outrun(lane: Lane, copy: Copy, now: float) -> None:
    """`copy`, which `lane`'s host was working on, lost to its hedge: the host is at least that slow."""
    if lane.running and lane.running[0] is copy:
        at_least = max(0.0, now - max(lane.last_done, copy.started)) / max(1, copy.size)
        lane.item_seconds = max(lane.item_seconds or 0.0, at_least)
        lane.last_done = now


def learn(lane: Lane, copy: Copy, now: float) -> float:
    """`lane`'s host served `copy` just now: its seconds per item, updated (and returned).

    The time counted is since the host finished its previous shard (or since this one started,
    if later), so shards queued behind each other on one host are not counted twice."""
    since = max(lane.last_done, copy.started)
    sample = max(0.0, now - since) / max(1, copy.size)
    old = lane.item_seconds
    lane.item_seconds = sample if old is None else (1 - LEARN_WEIGHT) * old + LEARN_WEIGHT * sample
    return lane.item_seconds
