"""A caller's deadline, told to the host (`X-GPU-Timeout`, issue 28 §1: overload refuses batch work first, with a
Retry-After from the backlog and the measured rate): the scheduler refuses batch work its backlog cannot finish in
time, the rate it judges by, and the bridge's side (the header it sends, a host behind its work is busy and not
broken, no attempt without time to answer). A fake engine held on an event and `httpx.MockTransport` hosts: no
timing is asserted, only what is refused and what is sent.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gpu_protocol.routes import TIMEOUT_HEADER, TOO_LATE_HEADER, parse_timeout, timeout_headers
from gpu_service.errors import Overloaded, TooLate
from gpu_service.scheduling.lanes import Lane
from gpu_service.scheduling.pace import RATE_MIN_BATCHES, BatchStats
from mcp_bridge.pool.errors import NoHostAvailable, PoolBusy, PoolTimeout
from tests.support.waiting import wait_until_async
from tests.unit.test_pool import Clock, call, make_pool, ok
from tests.unit.test_priority_scheduling import BULK, HeldEngine, hold_first_batch, scheduler

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- the header


@pytest.mark.parametrize("value, seconds", [("10", 10.0), (" 0.25 ", 0.25), ("", None), (None, None)])
def test_the_timeout_header_reads_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_timeout(value) == seconds


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", "1e9"])
def test_a_bad_timeout_header_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ValueError, match=TIMEOUT_HEADER):
        parse_timeout(value)


def test_the_header_the_bridge_writes_is_one_the_service_reads() -> None:
    assert parse_timeout(timeout_headers(9.87654)[TIMEOUT_HEADER]) == pytest.approx(9.877)


# --------------------------------------------------------------------------- the rate


def test_the_rate_is_the_median_of_bulk_batches_only() -> None:
    stats = BatchStats()
    stats.record(tokens=10, padded=10, elapsed=0.03, bulk=False)  # a query: mostly a pass's fixed cost
    stats.record(tokens=6_400, padded=6_400, elapsed=8.0)  # a first batch while kernels are prepared
    assert stats.seconds_for(1000) is None, "not known before a few batch-class batches"
    for _ in range(RATE_MIN_BATCHES):
        stats.record(tokens=6_400, padded=6_400, elapsed=1.0)
    assert stats.tokens_per_s == 6_400
    assert stats.seconds_for(12_800) == 2.0
    assert stats.batches == 2 + RATE_MIN_BATCHES


def measured(sched: object, tokens_per_s: float) -> None:
    stats: BatchStats = sched.stats  # type: ignore[attr-defined]
    for _ in range(RATE_MIN_BATCHES):
        stats.record(tokens=int(tokens_per_s), padded=int(tokens_per_s), elapsed=1.0)


# --------------------------------------------------------------------------- the service's scheduler


async def test_batch_work_its_backlog_cannot_finish_in_time_is_refused_with_when_it_would_fit() -> None:
    engine = HeldEngine()
    sched = scheduler(engine)
    measured(sched, 10.0)  # ten tokens a second: the 40 queued below are 4 s of work
    bulk = await hold_first_batch(engine, sched, [f"d{i}" for i in range(44)])
    with pytest.raises(Overloaded) as refused:
        await sched.submit(["late"], [5], lane=BULK, deadline=time.monotonic() + 2.0)
    assert isinstance(refused.value, TooLate) and refused.value.headers == {TOO_LATE_HEADER: "1"}
    assert "would not finish" in refused.value.detail and 2 <= (refused.value.retry_after_s or 0) <= 6
    assert sched.queued_by_class()["batch"] == 40, "a refused request leaves nothing queued"
    early = asyncio.create_task(sched.submit(["fits"], [5], lane=BULK, deadline=time.monotonic() + 30.0))
    agent = asyncio.create_task(sched.submit(["query"], [5], lane=Lane("interactive", "agent"),
                                             deadline=time.monotonic() + 2.0))
    await asyncio.sleep(0)
    engine.gate.set()
    assert await agent == ["query"], "interactive work is never refused for the batch backlog"
    assert await early == ["fits"]
    await bulk
    await sched.close()


async def test_another_tenant_is_judged_by_its_turn_not_the_whole_backlog() -> None:
    """Tenants take turns: a one-item request of a second tenant waits for about one item of the first's 40,
    not all of them, so it is admitted with a deadline that the whole backlog would miss."""
    engine = HeldEngine()
    sched = scheduler(engine)
    measured(sched, 10.0)
    bulk = await hold_first_batch(engine, sched, [f"d{i}" for i in range(44)])
    other = asyncio.create_task(sched.submit(["mine"], [1], lane=Lane("batch", "other"), deadline=time.monotonic() + 2.0))
    await asyncio.sleep(0)
    assert sched.queued_by_class()["batch"] == 41, "admitted"
    with pytest.raises(Overloaded):  # the first tenant's own next request does wait for its 40
        await sched.submit(["more"], [1], lane=BULK, deadline=time.monotonic() + 2.0)
    engine.gate.set()
    assert await other == ["mine"]
    await bulk
    await sched.close()


async def test_until_the_rate_is_measured_a_rounds_worth_may_wait_ahead() -> None:
    """A cold host knows no rate: it admits batch work with up to a round's items ahead of it (here 16: four
    batches of four) and refuses more for a second, as a full queue does (no `X-GPU-Too-Late`: the same call may
    be tried again); with nothing ahead it admits whatever the rate, since another host would do no better."""
    engine = HeldEngine()
    sched = scheduler(engine)
    bulk = await hold_first_batch(engine, sched, [f"d{i}" for i in range(14)])
    waiting = sched.queued_by_class()["batch"]
    assert 10 <= waiting <= sched.round_items
    admitted = asyncio.create_task(sched.submit(["x"] * 6, [5] * 6, lane=BULK, deadline=time.monotonic() + 0.5))
    await asyncio.sleep(0)
    assert sched.queued_by_class()["batch"] == waiting + 6 > sched.round_items, "a round's worth ahead: admitted"
    with pytest.raises(Overloaded) as refused:
        await sched.submit(["y"], [5], lane=BULK, deadline=time.monotonic() + 60)
    assert not isinstance(refused.value, TooLate) and refused.value.retry_after_s == 1.0
    assert "not measured its rate yet" in refused.value.detail
    engine.gate.set()
    await bulk
    await admitted
    await sched.close()
    slow = scheduler(HeldEngine())
    measured(slow, 1.0)  # one token a second: 50 s of work, 5 s to do it in
    assert await slow.submit(["alone"], [50], lane=BULK, deadline=time.monotonic() + 5.0) == ["alone"], (
        "a request that would not finish even alone is run: another host would do no better")
    await slow.close()


async def test_work_whose_caller_stopped_waiting_leaves_the_backlog_at_once() -> None:
    engine = HeldEngine()
    sched = scheduler(engine)
    bulk = await hold_first_batch(engine, sched, ["d0", "d1", "d2", "d3"])
    with pytest.raises(Exception, match="deadline"):
        await sched.submit([f"t{i}" for i in range(30)], [1] * 30, lane=BULK, deadline=time.monotonic() + 0.05)
    assert sched.queued_by_class()["batch"] == 0, "the timed-out request's items still count as backlog"
    engine.gate.set()
    await bulk
    await wait_until_async(lambda: not sched._has_work(), timeout=10, message="the dropped items were never cleared")
    assert sched.queued_by_class() == {"interactive": 0, "batch": 0}
    await sched.close()


# --------------------------------------------------------------------------- the bridge


async def test_the_bridge_tells_a_gpu_service_host_how_long_it_waits_and_nobody_else() -> None:
    told: dict[str, str | None] = {}

    def recording(name: str):
        def handler(request: httpx.Request) -> httpx.Response:
            told[name] = request.headers.get(TIMEOUT_HEADER)
            return ok(request)
        return handler

    clock = Clock()
    ours = make_pool({"a": recording("a")}, clock, timeout=12)
    await call(ours, deadline=8.0)
    assert told["a"] is not None and 0 < float(told["a"]) <= 8.0, "the attempt's own wait, within the call's"
    theirs = make_pool({"b": recording("b")}, clock, host_b={"type": "openai"})
    assert theirs.hosts[0].protocol.deadline_headers(5.0) == {}, "an OpenAI-compatible server gets no such header"


async def test_a_host_that_ran_out_of_the_time_it_was_told_is_busy_not_broken() -> None:
    """A gpu-service's 504 with Retry-After: it is behind its queue. The host cools down (no failure counted,
    so a pool-wide overload ejects nobody), the call goes on elsewhere, and all hosts behind is a 429."""
    clock = Clock()
    behind = {"Retry-After": "20"}
    pool = make_pool({"a": lambda r: httpx.Response(504, json={"detail": "deadline"}, headers=behind), "b": ok},
                     clock, loadBalancing="round-robin")
    assert [await call(pool), await call(pool)] == ["b", "b"]  # one of them tried a first
    a = pool.host("a")
    assert a.record.consecutive_failures == 0 and a.state(clock.now) == "cooling-down"
    alone = Clock()
    both = make_pool({"a": lambda r: httpx.Response(504, json={"detail": "deadline"}, headers=behind)}, alone)
    started = alone.now
    with pytest.raises(PoolBusy) as busy:
        await call(both, deadline=10.0)
    assert busy.value.retry_after >= 1.0
    assert alone.now - started < 1.0, "a host cooling longer than the call has left is not waited for"


@pytest.mark.parametrize("too_late", [True, False])
async def test_a_call_its_hosts_cannot_finish_in_time_is_answered_429_at_once(too_late: bool) -> None:
    """Hosts that refuse with `X-GPU-Too-Late` would refuse the same call again with less time left: the call is a
    429 at once, not after waiting out their short Retry-After until its deadline, and the hosts are not cooled
    down (the next call, with its whole wait, may fit). A plain 429 with the same Retry-After (a full queue that
    may drain) is waited for and tried again."""
    headers = {"Retry-After": "2", **({TOO_LATE_HEADER: "1"} if too_late else {})}
    clock = Clock()
    pool = make_pool({name: lambda r: httpx.Response(429, json={"detail": "behind"}, headers=headers)
                      for name in ("a", "b")}, clock)
    started = clock.now
    with pytest.raises(PoolBusy) as busy:
        await call(pool, deadline=10.0)
    tries = pool.seen["a"] + pool.seen["b"]  # type: ignore[attr-defined]
    if too_late:
        assert clock.now - started < 1.0 and tries == 2, (clock.now - started, tries)
        assert busy.value.retry_after == 2.0, "the caller is told when a call with its whole wait would fit"
        assert pool.host("a").state(clock.now) != "cooling-down", "too late for this call, not for the next"
    else:
        assert clock.now - started >= 2.0 and tries > 2, (clock.now - started, tries)


@pytest.mark.parametrize("spent, answered", [(9.0, True), (9.7, False)])
async def test_no_retry_starts_without_time_to_be_answered(spent: float, answered: bool) -> None:
    """After a failure with under `MIN_RETRY_S` (0.5 s) of the call left, no other host is tried: its answer could
    not come in time, and its timeout would count against a host that did nothing wrong."""
    clock = Clock()

    def slow_failure(request: httpx.Request) -> httpx.Response:
        clock.now += spent
        return httpx.Response(500, json={"detail": "broke"})

    pool = make_pool({"a": slow_failure, "b": ok}, clock, loadBalancing="round-robin")
    pool.host("b").record.cooldown_until = clock.now + 0.01  # a goes first
    if answered:
        assert await call(pool, deadline=10.0) == "b"
    else:
        with pytest.raises((PoolTimeout, NoHostAvailable)):
            await call(pool, deadline=10.0)
        assert pool.seen["b"] == 0  # type: ignore[attr-defined]


async def test_a_few_short_texts_marked_batch_do_not_set_the_pace() -> None:
    """A batch-class batch of a few short texts is mostly a pass's fixed cost: counted, it made a 384-text backlog
    look like 42 s of work on this CPU and refused requests that finished in 6 (the fresh clone's failure)."""
    sched = scheduler(HeldEngine())
    for i in range(2 * RATE_MIN_BATCHES):
        assert await sched.submit([f"t{i}"], [5], lane=BULK) == [f"t{i}"]
    assert sched.stats.tokens_per_s == 0 and sched.stats.s_per_token == 0
    assert await sched.submit(["long"], [400], lane=BULK) == ["long"]  # a bulk-sized batch is measured
    assert sched.stats.s_per_token > 0
    await sched.close()
