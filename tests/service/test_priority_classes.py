"""Priority classes on a real service: a small call is not queued behind a bulk backlog (issue 28 §1).

What is asserted is the order in which requests finish, never how long they took: a one-text call sent
while three 128-text requests are queued finishes before the last of them (first come, first served would
finish it after all three), and the same call marked `X-GPU-Priority: batch` waits its turn behind them.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from gpu_protocol.priority import PRIORITY_HEADER, TENANT_HEADER
from gpu_protocol.routes import PROTOCOL_HEADER, TIMEOUT_HEADER, TOO_LATE_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.anyio
BULK_REQUESTS, BULK_TEXTS = 3, 128


def bulk_texts(request: int) -> list[str]:
    return [f"bulk request {request} document {i}: " + "the pool indexes a long note " * 12 for i in range(BULK_TEXTS)]


async def finish_order(url: str, small_headers: dict[str, str]) -> list[str]:
    """Start the bulk requests, send the one-text call once they are queued, and return who finished when."""
    finished: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:

        async def post(name: str, texts: list[str], headers: dict[str, str]) -> None:
            response = await http.post("/embed", json={"texts": texts}, headers=headers)
            assert response.status_code == 200, response.text
            finished.append(name)

        bulk = [asyncio.create_task(post(f"bulk{r}", bulk_texts(r), {})) for r in range(BULK_REQUESTS)]

        async def queued() -> bool:
            return (await http.get("/status")).json()["queue_depth"] >= BULK_TEXTS * (BULK_REQUESTS - 1)

        await wait_until_async(queued, timeout=120, interval=0.02, message="the bulk requests never queued")
        # /status says which class waits (to a caller of protocol 2 or later: a 0.3.0 bridge reads strictly)
        status = await http.get("/status", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)})
        by_class = status.json()["queued_by_class"]
        assert by_class["batch"] >= BULK_TEXTS * (BULK_REQUESTS - 1) and by_class["interactive"] == 0, by_class
        metrics = (await http.get("/metrics")).text  # ... and so does /metrics
        assert 'gpu_service_queue_depth_by_class{class="interactive"} 0.0' in metrics
        waiting = re.search(r'gpu_service_queue_depth_by_class\{class="batch"\} (\d+)', metrics)
        assert waiting and int(waiting.group(1)) > 0, metrics
        await asyncio.gather(post("small", ["what did I note about the pool?"], small_headers), *bulk)
    return finished


async def test_a_small_call_finishes_before_the_bulk_backlog(service: ServiceProcess) -> None:
    order = await finish_order(service.url, {})
    assert order.index("small") < BULK_REQUESTS, order  # not last: it went into the next batch
    metrics = httpx.get(f"{service.url}/metrics").text  # each class's wait, apart
    for priority in ("interactive", "batch"):
        counted = re.search(rf'gpu_service_queue_seconds_by_class_count\{{class="{priority}"\}} (\S+)', metrics)
        assert counted and float(counted.group(1)) >= 1, (priority, metrics)


async def test_a_small_call_marked_batch_waits_its_turn(service: ServiceProcess) -> None:
    order = await finish_order(service.url, {PRIORITY_HEADER: "batch"})
    assert order.index("small") >= 1, order  # behind the bulk request that was queued first


async def test_a_bad_priority_or_tenant_header_is_refused_naming_what_is_allowed(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        bad = await http.post("/embed", json={"texts": ["a"]}, headers={PRIORITY_HEADER: "urgent"})
        assert bad.status_code == 400 and "interactive, batch" in bad.json()["detail"], bad.text
        long = await http.post("/embed", json={"texts": ["a"]}, headers={TENANT_HEADER: "t" * 100})
        assert long.status_code == 400 and TENANT_HEADER in long.json()["detail"], long.text
        fine = await http.post("/embed", json={"texts": ["a"]}, headers={PRIORITY_HEADER: "Batch", TENANT_HEADER: "a"})
        assert fine.status_code == 200, fine.text
        assert fine.headers[PRIORITY_HEADER] == "batch"  # the answer names the class it queued in
        by_size = await http.post("/v1/embeddings", json={"input": ["a"] * 40, "model": "all-MiniLM-L6-v2"})
        assert by_size.status_code == 200 and by_size.headers[PRIORITY_HEADER] == "batch", by_size.headers
        query = await http.post("/embed", json={"texts": ["a"]})
        assert query.headers[PRIORITY_HEADER] == "interactive"


async def test_batch_work_that_would_miss_its_callers_wait_is_refused_at_once(service: ServiceProcess) -> None:
    """`X-GPU-Timeout` says how long the caller waits: batch work that the backlog ahead of it cannot finish by
    then is refused at once (429 with Retry-After) instead of being computed for nobody; interactive work and
    the backlog itself are served, and a wait that is no number of seconds is a 400 naming the header."""
    async with httpx.AsyncClient(base_url=service.url, timeout=300) as http:
        bad = await http.post("/embed", json={"texts": ["a"]}, headers={TIMEOUT_HEADER: "soon"})
        assert bad.status_code == 400 and TIMEOUT_HEADER in bad.json()["detail"], bad.text
        model = "all-MiniLM-L6-v2"
        before = (await http.get("/status")).json()["batches"].get(model, 0)
        bulk = [asyncio.create_task(http.post("/embed", json={"texts": bulk_texts(r)})) for r in range(BULK_REQUESTS)]

        async def measured_with_a_backlog() -> bool:  # the rate is known after a few batch-class batches
            status = (await http.get("/status")).json()
            return status["batches"].get(model, 0) >= before + 4 and status["queue_depth"] >= BULK_TEXTS // 2

        await wait_until_async(measured_with_a_backlog, timeout=120, interval=0.02, message="no backlog was measured")
        late, asked = await asyncio.gather(
            http.post("/embed", json={"texts": ["one more note"]}, headers={PRIORITY_HEADER: "batch",
                                                                           TIMEOUT_HEADER: "0.05"}),
            http.post("/embed", json={"texts": ["what did I note?"]}, headers={TIMEOUT_HEADER: "60"}))
        assert late.status_code == 429 and "would not finish" in late.json()["detail"], late.text
        assert 1 <= int(late.headers["retry-after"]) <= 60 and late.headers[TOO_LATE_HEADER] == "1", late.headers
        assert asked.status_code == 200, asked.text
        assert [answer.status_code for answer in await asyncio.gather(*bulk)] == [200] * BULK_REQUESTS
