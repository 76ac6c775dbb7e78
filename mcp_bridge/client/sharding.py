"""Split one large request into shards that run in parallel across the pool.

Each shard is an ordinary pool request (so it gets its own retries and failover: a shard that
fails on one host is redone on another); which host it goes to first is chosen by the dispatch
policy (`dispatch.py`) from what each host has delivered, as hosts free up. Each shard's result
must have one entry per input, and results come back by shard index, so a host that fails or is
out-run by a hedged copy can delay a result but never lose or reorder one. The caller joins the
shards' results (lists end to end, vector blocks with one `np.concatenate`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Sequence, Sized
from typing import Any, Generic, TypeVar

from mcp_bridge.client import dispatch
from mcp_bridge.client.dispatch import Copy, Lane
from mcp_bridge.pool.gate import slot_watcher

T = TypeVar("T")
S = TypeVar("S", bound=Sized)

Progress = Callable[[int, int], Awaitable[None]]
RunShard = Callable[[Sequence[T], int, str | None], Awaitable[tuple[S, str]]]
"""`run_shard(shard, index, prefer)`: the shard's result and the name of the host that served it;
`prefer` is the host to send it to first (None: the pool picks)."""
Learned = Callable[[str, float], None]
"""Told a host's newly measured seconds per item, to keep for the next call."""


def split(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [items]


async def run_sharded(
    items: Sequence[T],
    shard_size: int,
    run_shard: RunShard[T, S],
    *,
    lanes: Sequence[Lane],
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    learned: Learned | None = None,
) -> list[S]:
    """`run_shard` for every shard, placed on `lanes` by the dispatch policy; the shards' results in order.

    `clock` and `sleep` time the policy's estimates and its looks between finished shards (a test's
    virtual time)."""
    shards = split(items, shard_size)
    call = _ShardedCall(shards, run_shard, list(lanes), (clock, sleep), progress, learned)
    try:
        await call.run()
    finally:
        await call.stop()
    joined = [r for r in call.results if r is not None]
    if len(joined) != len(shards) or sum(len(r) for r in joined) != len(items):
        raise ValueError(f"sharded request returned {sum(len(r) for r in joined)} results for {len(items)} inputs")
    return joined


class _ShardedCall(Generic[T, S]):
    """One sharded call in flight: shards waiting, copies running (on which lane), results by index."""

    def __init__(self, shards: list[Sequence[T]], run_shard: RunShard[T, S], lanes: list[Lane],
                 timing: tuple[Callable[[], float], Callable[[float], Awaitable[None]]],
                 progress: Progress | None, learned: Learned | None) -> None:
        if not lanes:
            raise ValueError("a sharded call needs at least one lane")
        self.shards = shards
        self.run_shard = run_shard
        self.lanes = lanes
        self.clock, self.sleep = timing
        self.progress = progress
        self.learned = learned
        self.waiting = collections.deque(range(len(shards)))
        self.results: list[S | None] = [None] * len(shards)
        self.done = 0
        self.copies: dict[asyncio.Task[tuple[S, str]], tuple[Lane, Copy]] = {}
        self.hedged: set[int] = set()
        self.dropped: set[asyncio.Task[tuple[S, str]]] = set()

    async def run(self) -> None:
        while self.done < len(self.shards):
            self._dispatch()
            wake = dispatch.wake_in(self.lanes, self.clock())
            timer = asyncio.ensure_future(self.sleep(wake)) if wake is not None else None
            try:
                waits: set[asyncio.Future[Any]] = {*self.copies, *([timer] if timer else [])}
                finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if timer is not None:
                    timer.cancel()
            for task in [copy for copy in self.copies if copy in finished]:
                await self._finished(task)

    def _dispatch(self) -> None:
        now = self.clock()
        sizes = [len(self.shards[i]) for i in self.waiting]
        for lane in dispatch.starts(self.lanes, sizes, now):
            self._start(self.waiting.popleft(), lane, now)
        while not self.waiting and (pick := dispatch.hedge(self.lanes, now, self.hedged)) is not None:
            copy, lane = pick
            self.hedged.add(copy.shard)
            self._start(copy.shard, lane, now)

    def _start(self, index: int, lane: Lane, now: float) -> None:
        copy = Copy(index, len(self.shards[index]), now)
        lane.running.append(copy)
        task = asyncio.ensure_future(self._watched(copy, self.run_shard(self.shards[index], index, lane.name)))
        self.copies[task] = (lane, copy)

    async def _watched(self, copy: Copy, running: Awaitable[tuple[S, str]]) -> tuple[S, str]:
        """`running` in its own task, telling `copy` when it waits for a host slot and when it has one."""
        slot_watcher.set(_CopyWatcher(copy, self.clock))
        return await running

    async def _finished(self, task: asyncio.Task[tuple[S, str]]) -> None:
        if task not in self.copies:
            return  # cancelled by its twin's win in this same round
        lane, copy = self.copies.pop(task)
        now = self.clock()
        error = task.exception()
        if error is None:
            out, served = task.result()
            if served == lane.name and lane.name is not None:
                seconds = dispatch.learn(lane, copy, now)
                if self.learned is not None:
                    self.learned(lane.name, seconds)
        lane.running.remove(copy)
        lane.last_done = now
        if self.results[copy.shard] is not None:
            return
        if error is not None:
            if self._twins(copy.shard):
                return  # its other copy may still succeed
            raise error
        if len(out) != copy.size:
            raise ValueError(f"shard {copy.shard} returned {len(out)} results for {copy.size} inputs")
        self.results[copy.shard] = out
        self.done += 1
        for twin in self._twins(copy.shard):
            self._drop(twin, now)
        if self.progress is not None:
            await self.progress(self.done, len(self.shards))

    def _twins(self, shard: int) -> list[asyncio.Task[tuple[S, str]]]:
        return [task for task, (_, copy) in self.copies.items() if copy.shard == shard]

    def _drop(self, task: asyncio.Task[tuple[S, str]], now: float) -> None:
        """Cancel a copy no longer needed; if its host was working on it, the host moves on now."""
        lane, copy = self.copies.pop(task)
        if lane.name is not None:
            dispatch.outrun(lane, copy, now)
        lane.running.remove(copy)
        task.cancel()
        self.dropped.add(task)

    async def stop(self) -> None:
        """Cancel whatever still runs (a failure, the caller's cancellation) and wait for it to end."""
        tasks = [*self.copies, *self.dropped]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.copies.clear()
        self.dropped.clear()


class _CopyWatcher:
    """A copy waiting at the pool's slot gate is on no host yet: started (for its host's rate and its
    lateness) counts from when it gets a slot."""

    def __init__(self, copy: Copy, clock: Callable[[], float]) -> None:
        self.copy, self.clock = copy, clock

    def waiting(self) -> None:
        self.copy.admitted = False

    def admitted(self) -> None:
        self.copy.admitted = True
        self.copy.started = self.clock()
