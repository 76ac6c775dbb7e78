"""Hosts that stand for many (`cluster: true`, e.g. a Ray Serve proxy): 408 retried, retries may go to
the same host, ejection only after a longer run of failures. MockTransport hosts, hand-driven clock."""

from __future__ import annotations

import httpx
import pytest

from mcp_bridge.pool.errors import HostRejected
from tests.unit.test_pool import Clock, Handler, call, make_pool, ok


def answers(*codes: int) -> Handler:
    """A host answering these statuses in turn (then 200s): the replicas behind a proxy, one after another."""
    queue = list(codes)

    def handle(request: httpx.Request) -> httpx.Response:
        code = queue.pop(0) if queue else 200
        return httpx.Response(code, json={"detail": f"status {code}"} if code >= 400 else {"ok": True})

    return handle


@pytest.mark.anyio
async def test_a_cluster_host_that_answers_408_is_tried_again() -> None:
    pool = make_pool({"serve": answers(408, 200)}, host_serve={"cluster": True})
    assert await call(pool) == "serve"
    assert pool.seen["serve"] == 2
    assert pool.host("serve").record.consecutive_failures == 0


@pytest.mark.anyio
async def test_a_cluster_host_is_tried_again_before_an_ejected_host_is_tried_in_panic() -> None:
    # A plain host is tried once per round, so after its failure only `other` (ejected) is left and
    # the pool would panic onto it; a cluster host stays a candidate and gets the retry.
    pool = make_pool({"serve": answers(500, 200), "other": ok}, host_serve={"cluster": True})
    for _ in range(3):
        pool.host("other").failed("HTTP 500")
    assert pool.host("other").ejected(pool.clock())
    assert await call(pool) == "serve"
    assert pool.seen == {"serve": 2}


@pytest.mark.anyio
async def test_a_408_from_a_plain_host_is_the_callers_problem() -> None:
    pool = make_pool({"a": answers(408, 200), "b": ok}, loadBalancing="round-robin")
    with pytest.raises(HostRejected) as err:
        while True:  # round-robin reaches `a` within two calls
            await call(pool)
    assert err.value.status == 408
    assert pool.host("a").record.consecutive_failures == 0


def test_a_cluster_host_needs_three_times_the_failures_to_be_ejected() -> None:
    clock = Clock()
    pool = make_pool({"serve": ok, "plain": ok}, clock, failureThreshold=2, host_serve={"cluster": True})
    serve, plain = pool.host("serve"), pool.host("plain")
    for _ in range(2):
        plain.failed("HTTP 500")
        serve.failed("HTTP 500")
    assert plain.ejected(clock()) and not serve.ejected(clock())
    for _ in range(3):
        serve.failed("HTTP 500")
    assert not serve.ejected(clock())
    serve.failed("HTTP 500")
    assert serve.ejected(clock())
