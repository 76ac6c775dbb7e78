"""Split one large request into shards that run in parallel across the pool.

Each shard is an ordinary pool request (so it gets its own host choice, retries and
failover); each shard's result must have one entry per input, and results come back by
shard index, so a host that fails mid-way can delay a result but never lose or reorder
one. The caller joins the shards' results (lists end to end, vector blocks with one
`np.concatenate`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence, Sized
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S", bound=Sized)

Progress = Callable[[int, int], Awaitable[None]]


def split(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [items]


async def run_sharded(
    items: Sequence[T],
    shard_size: int,
    run_shard: Callable[[Sequence[T], int], Awaitable[S]],
    *,
    parallel: int,
    progress: Progress | None = None,
) -> list[S]:
    """`run_shard(shard, index)` for every shard, at most `parallel` at once; the shards' results in order."""
    shards = split(items, shard_size)
    results: list[S | None] = [None] * len(shards)
    gate = asyncio.Semaphore(max(1, parallel))
    done = 0

    async def one(index: int) -> None:
        nonlocal done
        async with gate:
            out = await run_shard(shards[index], index)
        if len(out) != len(shards[index]):
            raise ValueError(f"shard {index} returned {len(out)} results for {len(shards[index])} inputs")
        results[index] = out
        done += 1
        if progress is not None:
            await progress(done, len(shards))

    # Plain tasks + gather (not TaskGroup, which cancels the calling task and confuses the
    # MCP server's cancel scopes): the first failure cancels the other shards and is raised.
    tasks = [asyncio.create_task(one(i)) for i in range(len(shards))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    joined = [r for r in results if r is not None]
    if len(joined) != len(shards) or sum(len(r) for r in joined) != len(items):
        raise ValueError(f"sharded request returned {sum(len(r) for r in joined)} results for {len(items)} inputs")
    return joined
