"""Sharded calls over hosts of different speeds (issue 21 §3): the dispatch policy and the engine.

No timed assertions: hosts are simulated in virtual time (each works through its shards one
after another at its own seconds per item, the clock jumps from one finished shard to the next),
so "finished sooner" is exact arithmetic, not a stopwatch. The failover test runs the real
client and pool over `httpx.MockTransport` hosts.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Sequence

import httpx
import numpy as np
import pytest

from mcp_bridge.client import dispatch
from mcp_bridge.client.client import GpuClient
from mcp_bridge.client.dispatch import Copy, Lane
from mcp_bridge.client.shard_runner import RATE_MAX_AGE_S, ShardRunner
from mcp_bridge.client.sharding import run_sharded
from mcp_bridge.config import parse_config
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.routing import Need

FAST, SLOW = 0.001, 0.002  # seconds per item: the slow host takes twice as long


# --------------------------------------------------------------------------- the policy alone


def test_a_few_shards_go_where_they_finish_first() -> None:
    fast, slow = Lane("fast", 2, FAST), Lane("slow", 2, SLOW)
    chosen = [lane.name for lane in dispatch.starts([fast, slow], [250, 250, 250], now=0.0)]
    assert chosen.count("fast") == 2 and chosen.count("slow") == 1  # fast: 0.25 and 0.5; slow: 0.5
    assert [lane.name for lane in dispatch.starts([fast, slow], [250], now=0.0)] == ["fast"]


def test_the_slow_host_waits_rather_than_take_the_last_shard() -> None:
    fast = Lane("fast", 1, FAST, running=[Copy(0, 250, 0.0)])  # busy, no free slot
    slow = Lane("slow", 2, SLOW)
    # The fast host ends its shard at 0.25 and would finish the last one at 0.5: as soon as the slow one would.
    assert [lane.name for lane in dispatch.starts([fast, slow], [250], now=0.0)] == []
    assert [lane.name for lane in dispatch.starts([fast, slow], [250], now=0.1)] == []
    # With a queue of work a 3x slower host helps: one shard while the fast host does five.
    assert dispatch.plan([fast, Lane("slower", 2, 3 * FAST)], [250] * 6, now=0.0) == [5, 1]


def test_a_big_call_is_shared_by_rate() -> None:
    counts = dispatch.plan([Lane("fast", 2, FAST), Lane("slow", 2, SLOW)], [250] * 8, now=0.0)
    assert counts[0] > counts[1] > 0


def test_other_calls_work_on_a_host_counts_as_queued_ahead() -> None:
    fast, slow = Lane("fast", 2, FAST, busy=lambda: 3), Lane("slow", 2, SLOW, busy=lambda: 0)
    assert dispatch.plan([fast, slow], [250] * 3, now=0.0) == [1, 2]  # fast: 3 x 0.25 ahead of ours
    fast.busy = lambda: 0
    assert dispatch.plan([fast, slow], [250] * 3, now=0.0) == [2, 1]


def test_an_idle_fast_host_hedges_the_slow_hosts_last_shard_only_when_it_would_win() -> None:
    fast = Lane("fast", 2, FAST)
    slow = Lane("slow", 2, SLOW, running=[Copy(7, 250, 0.0)])  # expected to end at 0.5
    pick = dispatch.hedge([fast, slow], now=0.1, hedged=set())
    assert pick is not None and pick[0].shard == 7 and pick[1] is fast  # fast would end it at 0.35
    assert dispatch.hedge([fast, slow], now=0.1, hedged={7}) is None  # never a third copy
    assert dispatch.hedge([fast, slow], now=0.4, hedged=set()) is None  # almost done: leave it


def test_a_late_shard_is_hedged_even_by_an_equal_host() -> None:
    a = Lane("a", 2, FAST)
    b = Lane("b", 2, FAST, running=[Copy(3, 250, 0.0)])  # expected at 0.25
    assert dispatch.hedge([a, b], now=0.2, hedged=set()) is None
    assert dispatch.hedge([a, b], now=0.6, hedged=set()) is None  # 0.35 late: ends ~0.95, a copy ~0.85
    assert dispatch.hedge([a, b], now=0.8, hedged=set()) is not None  # 0.55 late: ends ~1.35, a copy ~1.05


def test_a_host_outrun_by_a_hedge_is_known_to_be_at_least_that_slow() -> None:
    copy = Copy(1, 100, 0.0)
    lane = Lane("slow", 2, None, running=[copy])
    dispatch.outrun(lane, copy, 0.5)
    assert lane.item_seconds == pytest.approx(0.005) and lane.last_done == 0.5


def test_rates_are_learned_per_host_without_counting_queued_time_twice() -> None:
    lane = Lane("h", 2)
    first, second = Copy(0, 100, 0.0), Copy(1, 100, 0.0)
    lane.running = [first, second]
    assert dispatch.learn(lane, first, 0.1) == pytest.approx(0.001)
    lane.last_done = 0.1
    assert dispatch.learn(lane, second, 0.2) == pytest.approx(0.001)  # it waited behind the first
    unmeasured = Lane("new", 2)
    assert dispatch.cost(unmeasured, [lane, unmeasured]) == pytest.approx(0.001)  # tried as the fastest


# --------------------------------------------------------------------------- the engine, in virtual time


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimulatedHosts:
    """Hosts that serve their shards one after another at their own speed; `drive` runs the virtual clock."""

    def __init__(self, rates: dict[str, float], clock: Clock, fail_once: str | None = None) -> None:
        self.rates, self.clock, self.fail_once = rates, clock, fail_once
        self.queues: dict[str, list[tuple[int, int, asyncio.Future[None]]]] = {name: [] for name in rates}
        self.busy_since = dict.fromkeys(rates, 0.0)
        self.served: dict[str, list[int]] = {name: [] for name in rates}
        self.cancelled: list[int] = []
        self.timers: list[tuple[float, asyncio.Future[None]]] = []
        self.idle_fast_while_slow_held_last: list[float] = []

    async def run_shard(self, shard: Sequence[int], index: int, prefer: str | None) -> tuple[list[int], str]:
        name = prefer or min(self.queues, key=lambda n: len(self.queues[n]))
        if self.fail_once == name:
            self.fail_once = None
            name = next(n for n in self.queues if n != name)  # the pool's failover: redone on another host
        if not self.queues[name]:
            self.busy_since[name] = self.clock.now
        entry = (index, len(shard), asyncio.get_running_loop().create_future())
        self.queues[name].append(entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            self.cancelled.append(index)
            if self.queues[name] and self.queues[name][0] is entry:
                self.busy_since[name] = self.clock.now
            self.queues[name].remove(entry)
            raise
        self.served[name].append(index)
        return [x * 10 for x in shard], name

    async def sleep(self, seconds: float) -> None:
        """The dispatcher's wait before looking again, in virtual time."""
        timer = (self.clock.now + seconds, asyncio.get_running_loop().create_future())
        self.timers.append(timer)
        try:
            await timer[1]
        finally:
            if timer in self.timers:
                self.timers.remove(timer)

    async def drive(self, call: asyncio.Task[list[list[int]]]) -> float:
        """Finish the head shard (or fire the timer) that comes first, again and again, until the call is
        done; its end time."""
        while not call.done():
            for _ in range(20):
                await asyncio.sleep(0)
            heads = {n: self.busy_since[n] + self.rates[n] * q[0][1] for n, q in self.queues.items() if q}
            if not heads:
                continue
            self._note_idle_fast()
            name = min(heads, key=lambda n: heads[n])
            timer = min(self.timers, default=None, key=lambda t: t[0])
            if timer is not None and timer[0] < heads[name]:
                self.clock.now = max(self.clock.now, timer[0])
                self.timers.remove(timer)
                timer[1].set_result(None)
                continue
            self.clock.now = heads[name]
            _, _, future = self.queues[name].pop(0)
            self.busy_since[name] = self.clock.now
            future.set_result(None)
        return self.clock.now

    def _note_idle_fast(self) -> None:
        """Record when the fastest host idles while only slower ones hold shards they will end later."""
        fastest = min(self.rates, key=lambda n: self.rates[n])
        held = [(n, q) for n, q in self.queues.items() if q]
        if self.queues[fastest] or not held:
            return
        for name, queue in held:
            ends = self.busy_since[name] + self.rates[name] * sum(size for _, size, _ in queue)
            if ends > self.clock.now + self.rates[fastest] * queue[-1][1] * 1.2:
                self.idle_fast_while_slow_held_last.append(self.clock.now)


async def simulate(rates: dict[str, float], items: int, known: bool = True,
                   fail_once: str | None = None) -> tuple[float, SimulatedHosts, list[int], list[int]]:
    clock = Clock()
    hosts = SimulatedHosts(rates, clock, fail_once)
    lanes = [Lane(n, 2, r if known else None) for n, r in rates.items()]
    progress: list[int] = []

    async def report(done: int, total: int) -> None:
        progress.append(done)

    call = asyncio.ensure_future(run_sharded(list(range(items)), 250, hosts.run_shard, lanes=lanes,
                                             progress=report, clock=clock, sleep=hosts.sleep))
    end = await hosts.drive(call)
    merged = [x for part in call.result() for x in part]
    return end, hosts, merged, progress


@pytest.mark.anyio
@pytest.mark.parametrize("known", [True, False], ids=["rates-known", "cold"])
async def test_fast_and_slow_beat_fast_alone_on_a_big_call(known: bool) -> None:
    alone, _, _, _ = await simulate({"fast": FAST}, 2000)
    both, hosts, merged, progress = await simulate({"fast": FAST, "slow": SLOW}, 2000, known=known)
    assert merged == [x * 10 for x in range(2000)]  # exact and in order
    assert progress == list(range(1, 9))  # one report per shard
    assert both < alone, f"fast+slow took {both:.3f} virtual s, fast alone {alone:.3f}"
    assert len(hosts.served["fast"]) > len(hosts.served["slow"]) > 0


@pytest.mark.anyio
@pytest.mark.parametrize("known", [True, False], ids=["rates-known", "cold"])
async def test_a_few_shards_are_no_slower_than_the_fast_host_alone(known: bool) -> None:
    alone, _, _, _ = await simulate({"fast": FAST}, 750)
    both, hosts, merged, _ = await simulate({"fast": FAST, "slow": SLOW}, 750, known=known)
    assert merged == [x * 10 for x in range(750)]
    assert both <= alone
    assert hosts.idle_fast_while_slow_held_last == [], "the fast host idled while the slow one held the end"


@pytest.mark.anyio
async def test_a_much_slower_host_is_hedged_and_its_copy_cancelled() -> None:
    both, hosts, merged, _ = await simulate({"fast": FAST, "slow": 10 * FAST}, 750, known=False)
    assert merged == [x * 10 for x in range(750)]
    assert hosts.cancelled, "the slow host's copy of the hedged shard is cancelled once the fast one wins"
    assert both < 3 * 250 * 10 * FAST


@pytest.mark.anyio
async def test_a_failed_shard_is_redone_and_results_stay_in_order() -> None:
    _, hosts, merged, progress = await simulate({"fast": FAST, "slow": SLOW}, 2000, fail_once="slow")
    assert merged == [x * 10 for x in range(2000)]
    assert progress == list(range(1, 9))


@pytest.mark.anyio
async def test_cancelling_the_call_cancels_every_shard() -> None:
    clock = Clock()
    hosts = SimulatedHosts({"fast": FAST, "slow": SLOW}, clock)
    call = asyncio.ensure_future(run_sharded(list(range(2000)), 250, hosts.run_shard,
                                             lanes=[Lane("fast", 2), Lane("slow", 2)], clock=clock,
                                             sleep=hosts.sleep))
    for _ in range(20):
        await asyncio.sleep(0)
    assert sum(len(q) for q in hosts.queues.values()) == 4
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert sorted(hosts.cancelled) == [0, 1, 2, 3] and not any(hosts.queues.values())


# --------------------------------------------------------------------------- the real client and pool


def embed_host(fail: bool) -> httpx.MockTransport:
    """gpu-service's /embed answer, each text `t<i>` embedded as the vector [i, i]."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("a") and fail:
            return httpx.Response(500, json={"detail": "boom"})
        import json

        texts = json.loads(request.content)["texts"]
        rows = np.array([[float(t[1:])] * 2 for t in texts], dtype=np.float32)
        return httpx.Response(200, json={"model": "m", "dimensions": 2, "count": len(texts), "truncated": 0,
                                         "embeddings_base64": base64.b64encode(rows.tobytes()).decode()})

    return httpx.MockTransport(handle)


@pytest.mark.anyio
@pytest.mark.parametrize("fail", [False, True], ids=["both-ok", "a-fails"])
async def test_the_client_shards_over_the_pool_with_failover(fail: bool) -> None:
    config = parse_config({"hosts": [{"name": "a", "url": "http://a.test:1"}, {"name": "b", "url": "http://b.test:1"}],
                           "shardSize": 10, "failureThreshold": 100, "retryBudgetPercent": 100}, "t")
    pool = HostPool(config, rng=random.Random(3), transport=embed_host(fail))
    try:
        result = await GpuClient(config, pool).embed([f"t{i}" for i in range(95)], normalize=False)
        assert np.array_equal(result.block.array[:, 0], np.arange(95, dtype=np.float32))
        a, b = pool.host("a").record, pool.host("b").record
        if fail:
            assert a.failed > 0 and a.served == 0 and b.served == 10  # every shard a failed was redone on b
        else:
            assert a.served + b.served == 10 and set(a.item_seconds) == set(b.item_seconds) == {"embed:None"}
    finally:
        await pool.close()


@pytest.mark.anyio
async def test_a_rate_is_kept_between_calls_and_forgotten_after_a_minute() -> None:
    """A host measured slow once is not left out of small calls for ever: after RATE_MAX_AGE_S it is
    tried again as if never measured (as fast as the fastest)."""
    now = [0.0]
    config = parse_config({"hosts": [{"name": "a", "url": "http://a.test:1"}, {"name": "b", "url": "http://b.test:1"}],
                           "shardSize": 10}, "t")
    pool = HostPool(config, clock=lambda: now[0], transport=embed_host(False))
    runner = ShardRunner(pool, shard_size=10)
    try:
        need = Need("embed")
        runner._keep("embed:None", "a", 0.5)
        now[0] = RATE_MAX_AGE_S - 1
        assert [lane.item_seconds for lane in runner.lanes(need, "embed:None", shards=4)] == [0.5, None]
        assert [lane.item_seconds for lane in runner.lanes(need, "bertscore:None", shards=4)] == [None, None]
        now[0] = RATE_MAX_AGE_S + 1
        assert [lane.item_seconds for lane in runner.lanes(need, "embed:None", shards=4)] == [None, None]
    finally:
        await pool.close()
