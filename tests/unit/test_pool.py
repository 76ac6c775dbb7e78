"""The host pool's decisions, with `httpx.MockTransport` hosts and a hand-driven clock.

No network: every host is a function of the request. The clock only moves when a
test moves it, so ejection times and retry budgets are exact.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mcp_bridge.config import parse_config
from mcp_bridge.pool.errors import HostRejected, NoHostAvailable, PoolBusy, PoolTimeout
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from mcp_bridge.protocols.answers import parse_json
from tests.support.waiting import wait_until_async


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


Handler = Callable[[httpx.Request], httpx.Response]


def make_pool(handlers: dict[str, Handler], clock: Clock | None = None, seed: int = 7, **cfg) -> HostPool:
    hosts = [{"name": n, "url": f"http://{n}.test:8765"} for n in handlers]
    for h in hosts:
        h.update(cfg.pop(f"host_{h['name']}", {}))
    config = parse_config({"hosts": hosts, **cfg}, "test")
    seen: collections.Counter[str] = collections.Counter()

    def route(request: httpx.Request) -> httpx.Response:
        name = request.url.host.split(".")[0]
        seen[name] += 1
        return handlers[name](request)

    clock = clock or Clock()
    pool = HostPool(config, clock=clock, rng=random.Random(seed), sleep=clock.sleep,
                    transport=httpx.MockTransport(route))
    pool.seen = seen  # type: ignore[attr-defined]
    return pool


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(code, json={"detail": f"status {code}"}, headers=headers)


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def post_embed(host: object) -> HttpCall:
    return HttpCall("POST", "/embed", {})


def read_json(host: object, response: httpx.Response) -> object:
    return parse_json(response)


async def call(pool: HostPool, deadline: float = 30.0, pin: str | None = None) -> str:
    _, host = await pool.request("embed", post_embed, read_json, deadline=pool.clock() + deadline, pin=pin)
    return host.name


# --------------------------------------------------------------------------- retry matrix


@pytest.mark.anyio
@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
async def test_retryable_status_goes_to_a_different_host(code: int) -> None:
    pool = make_pool({"a": status(code), "b": ok}, loadBalancing="round-robin")
    for _ in range(4):
        assert await call(pool) == "b"
    assert pool.seen["a"] >= 1


@pytest.mark.anyio
@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 422])
async def test_client_errors_are_never_retried_or_held_against_the_host(code: int) -> None:
    pool = make_pool({"a": status(code), "b": ok}, loadBalancing="round-robin")
    with pytest.raises(HostRejected) as err:
        for _ in range(2):
            await call(pool, pin="a")
    assert err.value.host == "a" and err.value.status == code and f"status {code}" in str(err.value)
    assert pool.seen["b"] == 0 and pool.seen["a"] == 1
    assert pool.host("a").record.consecutive_failures == 0 and pool.host("a").state(pool.clock()) == "healthy"


@pytest.mark.anyio
async def test_connect_errors_and_timeouts_fail_over() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    pool = make_pool({"a": refuse, "b": timeout, "c": ok})
    for _ in range(5):
        assert await call(pool) == "c"


@pytest.mark.anyio
async def test_malformed_answers_count_as_failures() -> None:
    pool = make_pool({"a": lambda r: httpx.Response(200, text="<html>oops"), "b": ok}, loadBalancing="round-robin")
    for _ in range(3):
        assert await call(pool) == "b"
    assert pool.host("a").record.failed >= 1 and "malformed" in (pool.host("a").record.last_error or "")


# --------------------------------------------------------------------------- ejection


@pytest.mark.anyio
async def test_ejection_after_consecutive_failures_grows_with_each_ejection() -> None:
    clock = Clock()
    pool = make_pool({"a": status(500), "b": ok}, clock, loadBalancing="round-robin", failureThreshold=3,
                     ejectionSeconds=30, maxEjectionSeconds=75)
    a = pool.host("a")
    lengths = []
    for _ in range(3):
        while not a.ejected(clock.now):
            await call(pool)
        lengths.append(a.record.ejected_until - clock.now)
        clock.now = a.record.ejected_until + 0.01
    assert 27 <= lengths[0] <= 33 and 54 <= lengths[1] <= 66 and 67.5 <= lengths[2] <= 82.5  # 30, 60, cap 75 ±10%
    assert a.record.ejections == 3


@pytest.mark.anyio
async def test_ejected_host_gets_no_traffic_until_ejection_ends() -> None:
    clock = Clock()
    flaky = {"fail": True}
    pool = make_pool({"a": lambda r: status(503)(r) if flaky["fail"] else ok(r), "b": ok}, clock,
                     loadBalancing="round-robin", failureThreshold=2, ejectionSeconds=10)
    for _ in range(6):
        await call(pool)
    assert pool.host("a").ejected(clock.now)
    flaky["fail"] = False
    before = pool.seen["a"]
    for _ in range(6):
        assert await call(pool) == "b"
    assert pool.seen["a"] == before
    clock.now += 12
    assert "a" in {await call(pool) for _ in range(4)}


@pytest.mark.anyio
async def test_retry_after_cools_a_busy_host_without_counting_a_failure() -> None:
    clock = Clock()
    pool = make_pool({"a": status(429, {"Retry-After": "7"}), "b": ok}, clock, loadBalancing="round-robin")
    await call(pool)
    a = pool.host("a")
    assert a.state(clock.now) == "cooling-down" and a.record.consecutive_failures == 0
    assert 6.9 <= a.record.cooldown_until - clock.now <= 7.0


@pytest.mark.anyio
async def test_every_host_busy_to_the_end_is_busy_not_a_timeout() -> None:
    """Hosts that only ever say 429/503 + Retry-After are overloaded, not broken: the call ends with
    PoolBusy (an OpenAI client gets 429 + Retry-After) carrying the soonest cool-down; one real failure
    among them makes it an ordinary timeout."""
    clock = Clock()
    busy = make_pool({"a": status(429, {"Retry-After": "7"}), "b": status(503, {"Retry-After": "9"})}, clock)
    with pytest.raises(PoolBusy) as err:
        await call(busy, deadline=5)
    assert "every host is busy" in str(err.value) and 1.0 <= err.value.retry_after <= 7.0
    mixed = make_pool({"a": status(429, {"Retry-After": "7"}), "b": status(500)}, Clock())
    with pytest.raises((NoHostAvailable, PoolTimeout)) as other:
        await call(mixed, deadline=5)
    assert not isinstance(other.value, PoolBusy)


@pytest.mark.anyio
async def test_panic_mode_tries_hosts_that_are_all_out() -> None:
    clock = Clock()
    pool = make_pool({"a": ok, "b": ok}, clock)
    for h in pool.hosts:
        h.record.healthy = False
    assert await call(pool) in {"a", "b"}
    assert pool.panics >= 1 and pool.snapshot().mode == "panic"


@pytest.mark.anyio
async def test_all_hosts_failing_ends_with_a_clear_error_within_the_deadline() -> None:
    clock = Clock()
    pool = make_pool({"a": refuse, "b": refuse}, clock)
    start = clock.now
    with pytest.raises((NoHostAvailable, PoolTimeout)) as err:
        await call(pool, deadline=5)
    assert clock.now - start <= 5.01
    assert "a:" in str(err.value) and "b:" in str(err.value)


@pytest.mark.anyio
async def test_retry_budget_stops_retry_storms() -> None:
    clock = Clock()
    pool = make_pool({"a": status(502), "b": status(502), "c": status(502)}, clock, retryBudgetPercent=20)
    outcomes = collections.Counter()
    for _ in range(30):
        try:
            await call(pool, deadline=20)
        except (NoHostAvailable, PoolTimeout) as exc:
            outcomes["budget" if "budget" in str(exc) else "timeout"] += 1
    total_attempts = sum(pool.seen.values())
    # 30 requests: at most 30 first tries + a floor of 100 (10/s over 10 s) + 20% of 30 retries,
    # although each call had time for dozens of rounds over the three hosts.
    assert total_attempts <= 30 + 100 + 6
    assert outcomes["budget"] > 0


# --------------------------------------------------------------------------- balancing


@pytest.mark.anyio
async def test_weighted_round_robin_spreads_by_weight() -> None:
    pool = make_pool({"a": ok, "b": ok, "c": ok}, loadBalancing="round-robin", host_a={"weight": 2})
    picks = collections.Counter([await call(pool) for _ in range(40)])
    assert picks == {"a": 20, "b": 10, "c": 10}


@pytest.mark.anyio
async def test_least_busy_prefers_fewest_in_flight_per_weight() -> None:
    pool = make_pool({"a": ok, "b": ok, "c": ok})
    pool.host("a").record.in_flight = 3
    pool.host("b").record.in_flight = 1
    pool.host("c").record.in_flight = 2
    assert pool.pick("embed").name == "b"
    pool.host("c").weight = 4  # 2/4 < 1/1
    assert pool.pick("embed").name == "c"


def test_least_busy_ties_are_broken_at_random() -> None:
    pool = make_pool({"a": ok, "b": ok, "c": ok}, seed=1)
    picks = collections.Counter(pool.pick("embed").name for _ in range(300))
    assert set(picks) == {"a", "b", "c"} and min(picks.values()) > 60


def test_power_of_two_choices_above_eight_hosts() -> None:
    pool = make_pool({f"h{i}": ok for i in range(12)})
    for i, h in enumerate(pool.hosts):
        h.record.in_flight = i  # h0 is idle, h11 busiest
    picks = collections.Counter(pool.pick("embed").name for _ in range(2000))
    assert "h11" not in picks, "the busiest host never wins a two-way comparison"
    assert picks["h0"] > picks["h10"]


@pytest.mark.anyio
async def test_in_flight_counters_return_to_zero_after_cancellation() -> None:
    gate = asyncio.Event()

    cancels: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/cancel/"):
            cancels.append(request.url.path.split("/")[-1])
            return httpx.Response(200, json={"cancelled": True})
        await gate.wait()
        return httpx.Response(200, json={})

    config = parse_config({"hosts": [{"name": "a", "url": "http://a.test"}]}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(slow))
    tasks = [asyncio.create_task(call(pool)) for _ in range(5)]
    await wait_until_async(lambda: pool.host("a").record.in_flight == 5, message="all 5 requests should be in flight")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert pool.host("a").record.in_flight == 0
    await pool.close()
    assert len(cancels) == 5 and len(set(cancels)) == 5, "each abandoned request is cancelled on the host by its id"


@pytest.mark.anyio
async def test_max_concurrent_sends_overflow_elsewhere() -> None:
    gate = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, json={})

    config = parse_config({"hosts": [{"name": "a", "url": "http://a.test", "maxConcurrent": 2},
                                     {"name": "b", "url": "http://b.test"}], "loadBalancing": "round-robin"}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(slow))
    tasks = [asyncio.create_task(call(pool)) for _ in range(6)]
    await wait_until_async(lambda: pool.host("a").record.in_flight + pool.host("b").record.in_flight == 6,
                           message="all 6 requests should be in flight on a host")
    assert pool.host("a").record.in_flight <= 2 and pool.host("b").record.in_flight >= 4
    gate.set()
    await asyncio.gather(*tasks)
    await pool.close()


def test_openai_hosts_only_serve_embeddings() -> None:
    config = parse_config({"hosts": [{"name": "tei", "url": "http://tei.test", "type": "tei"},
                                     {"name": "ours", "url": "http://ours.test"}]}, "t")
    pool = HostPool(config)
    assert {pool.pick("bertscore").name for _ in range(20)} == {"ours"}
    assert {pool.pick("embed").name for _ in range(50)} == {"tei", "ours"}


# --------------------------------------------------------------------------- hedging and cancellation


def slow_and_fast(handler: Callable[[httpx.Request], Any]) -> HostPool:
    """Hosts `slow` (picked first) and `fast` with hedging on, answered by `handler`."""
    config = parse_config({"hosts": [{"name": "slow", "url": "http://slow.test"},
                                     {"name": "fast", "url": "http://fast.test"}],
                           "hedging": True, "loadBalancing": "round-robin"}, "t")
    return HostPool(config, transport=httpx.MockTransport(handler))


@pytest.mark.anyio
async def test_hedging_sends_a_slow_request_to_a_second_host() -> None:
    slow_started = asyncio.Event()
    slow_cancelled = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("slow"):
            slow_started.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                slow_cancelled.set()
                raise
        return httpx.Response(200, json={"host": request.url.host})

    pool = slow_and_fast(handler)
    slow = pool.host("slow")
    for _ in range(30):
        slow.record.latencies.append(0.05)  # its usual p95: 50 ms
    started = asyncio.get_running_loop().time()
    body, host = await pool.request("embed", post_embed, read_json, deadline=pool.clock() + 10)
    elapsed = asyncio.get_running_loop().time() - started
    assert host.name == "fast" and body == {"host": "fast.test"}
    assert elapsed < 1.0 and pool.hedges == 1 and pool.snapshot().hedges == 1
    assert slow_started.is_set() and slow_cancelled.is_set(), "the losing request is cancelled"
    assert slow.record.in_flight == 0 and pool.host("fast").record.in_flight == 0
    await pool.close()


@pytest.mark.anyio
async def test_no_hedging_by_default() -> None:
    pool = make_pool({"a": ok, "b": ok})
    for _ in range(30):
        pool.host("a").record.latencies.append(0.0)
    for _ in range(5):
        await call(pool)
    assert pool.hedges == 0


@pytest.mark.anyio
async def test_a_timed_out_request_is_cancelled_on_its_host_before_failover() -> None:
    cancels: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/cancel/"):
            cancels.append(request.url.host)
            return httpx.Response(200, json={"cancelled": True})
        if request.url.host.startswith("slow"):
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"ok": True})

    config = parse_config({"hosts": [{"name": "slow", "url": "http://slow.test"},
                                     {"name": "fast", "url": "http://fast.test"}],
                           "loadBalancing": "round-robin"}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(handler))
    _, host = await pool.request("embed", post_embed, read_json, deadline=pool.clock() + 10)
    await pool.close()
    assert host.name == "fast" and cancels == ["slow.test"]


# --------------------------------------------------------------------------- cluster hosts (a proxy for many replicas)


@pytest.mark.anyio
async def test_a_hedge_on_a_lone_cluster_host_goes_through_the_proxy_again() -> None:
    """A request a dying replica holds never answers (Ray Serve's proxy keeps it): with hedging, a copy goes
    back through the same cluster URL past the host's p95, where the proxy routes it to a live replica."""
    sent = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if sent == 1:
            await asyncio.sleep(30)  # held by the replica that died
        return httpx.Response(200, json={"replica": sent})

    config = parse_config({"hosts": [{"name": "ray", "url": "http://ray.test", "cluster": True}], "hedging": True}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(handler))
    ray_host = pool.host("ray")
    for _ in range(30):
        ray_host.record.latencies.append(0.05)
    ray_host.record.ejected_until = pool.clock() + 60  # its other requests failed at the proxy: ejected for now
    body, host = await asyncio.wait_for(
        pool.request("embed", post_embed, read_json, deadline=pool.clock() + 20), timeout=5)
    assert host is ray_host and body == {"replica": 2} and pool.hedges == 1
    assert ray_host.record.in_flight == 0
    await pool.close()


@pytest.mark.anyio
async def test_a_plain_host_is_never_its_own_hedge() -> None:
    sent = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        await asyncio.sleep(0.3)
        return httpx.Response(200, json={"n": sent})

    config = parse_config({"hosts": [{"name": "one", "url": "http://one.test"}], "hedging": True}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(handler))
    for _ in range(30):
        pool.host("one").record.latencies.append(0.05)
    body, _ = await pool.request("embed", post_embed, read_json, deadline=pool.clock() + 10)
    assert body == {"n": 1} and sent == 1 and pool.hedges == 0
    await pool.close()


@pytest.mark.anyio
async def test_a_request_sent_before_its_host_had_a_p95_is_hedged_once_late_by_it() -> None:
    """A bridge just started has no p95 for a host; requests in flight then must not be left unhedged for good."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("slow"):
            await asyncio.sleep(30)
        return httpx.Response(200, json={"host": request.url.host})

    pool = slow_and_fast(handler)
    slow = pool.host("slow")
    call = asyncio.ensure_future(pool.request("embed", post_embed, read_json, deadline=pool.clock() + 20))
    await wait_until_async(lambda: slow.record.in_flight == 1, message="the first request should go to slow")
    assert slow.p95_latency() is None
    slow.record.latencies.extend([0.05] * 30)  # other requests finished meanwhile: now it has a p95
    body, host = await asyncio.wait_for(call, timeout=5)
    assert host.name == "fast" and body == {"host": "fast.test"} and pool.hedges == 1
    await pool.close()
