"""Each class's queue cap and the batch class's guaranteed share, on a real service (issue 28 §1, docs/sharing.md).

One small service for the module: `GPU_MAX_QUEUE=8` (a cap a test reaches with one request), and batches of
one text (`GPU_MAX_BATCH_SIZE=1`), so every text is a turn of its class and a few callers keep the
interactive queue busy; one thread (`GPU_CPU_THREADS=1`), as a text's turn is short and the machine shared. A bulk request that is only there to fill the queue is cancelled, never waited for.
What is asserted are answers and orders, never durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from gpu_protocol.priority import PRIORITY_HEADER
from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.anyio
CAP = 8


@process_fixture(scope="module")
def capped() -> Iterator[ServiceProcess]:
    svc = ServiceProcess(env={"GPU_MAX_QUEUE": str(CAP), "GPU_MAX_BATCH_SIZE": "1", "GPU_CPU_THREADS": "1"}).start()
    yield svc
    svc.stop()


async def queued(http: httpx.AsyncClient) -> dict[str, int]:
    status = await http.get("/status", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)})
    return status.json()["queued_by_class"]


async def test_over_its_cap_batch_work_is_refused_with_retry_after_while_interactive_work_is_served(
    capped: ServiceProcess,
) -> None:
    async with httpx.AsyncClient(base_url=capped.url, timeout=120) as http:
        bulk = asyncio.create_task(http.post("/embed", json={"texts": [f"note {i} to index" for i in range(400)]},
                                             headers={"X-Request-Id": "caps-bulk"}))

        async def over_the_cap() -> bool:
            return (await queued(http))["batch"] > CAP

        await wait_until_async(over_the_cap, timeout=60, interval=0.02, message="the bulk request never queued")
        one_more, question = await asyncio.gather(
            http.post("/embed", json={"texts": ["one more note"]}, headers={PRIORITY_HEADER: "batch"}),
            http.post("/embed", json={"texts": ["what did I note?"]}))
        assert one_more.status_code == 429, one_more.text
        assert 1 <= int(one_more.headers["retry-after"]) <= 60, one_more.headers
        assert f"batch items queued (GPU_MAX_QUEUE={CAP})" in one_more.json()["detail"], one_more.text
        assert question.status_code == 200, question.text
        assert not bulk.done(), "the bulk request was to be queued all along"
        assert (await http.post("/cancel/caps-bulk")).json() == {"cancelled": True}
        assert (await bulk).status_code == 499


async def test_a_waiting_batch_request_finishes_while_interactive_calls_keep_coming(capped: ServiceProcess) -> None:
    """Callers send one-text calls back to back, so interactive work waits at nearly every turn; a batch
    request of two texts sent among them (two turns of its class: about eight in all at one in four) still
    finishes long before they would stop on their own (no starvation)."""
    callers, most_calls = 4, 150
    sent = 0
    async with httpx.AsyncClient(base_url=capped.url, timeout=120) as http:
        await wait_until_async(lambda: _nothing_queued(http), timeout=60, message="an earlier test's work is queued")
        bulk: asyncio.Future[httpx.Response] = asyncio.get_running_loop().create_future()

        async def keep_asking() -> None:
            nonlocal sent
            while not bulk.done() and sent < most_calls:
                sent += 1
                answer = await http.post("/embed", json={"texts": [f"question {sent}"]})
                assert answer.status_code == 200, answer.text

        asking = [asyncio.create_task(keep_asking()) for _ in range(callers)]
        await wait_until_async(lambda: sent > callers, timeout=60, message="the callers never got going")
        sent_before = sent
        answer = await http.post("/embed", json={"texts": ["a note to index", "and another"]},
                                 headers={PRIORITY_HEADER: "batch"})
        sent_meanwhile = sent - sent_before
        bulk.set_result(answer)
        await asyncio.gather(*asking)
    assert answer.status_code == 200, answer.text
    assert sent_meanwhile >= 1, "interactive calls kept coming while the batch request waited"
    assert sent < most_calls, f"the batch request waited until the callers stopped ({sent} calls)"


async def _nothing_queued(http: httpx.AsyncClient) -> bool:
    return sum((await queued(http)).values()) == 0
