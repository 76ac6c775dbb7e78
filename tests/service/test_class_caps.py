"""Each class's queue cap, the batch class's guaranteed share, and the classes of rerank and BERTScore calls, on a
real service (issue 28 §1, docs/sharing.md). Embeddings: tests/service/test_priority_classes.py; speech
synthesis and transcription: in-process, tests/unit/test_priority_scheduling.py.

One small service for the module: `GPU_MAX_QUEUE=8` (a cap a test reaches with one request), batches of one
text (`GPU_MAX_BATCH_SIZE=1`), so every text is a turn of its class and a few callers keep the interactive
queue busy, one thread (`GPU_CPU_THREADS=1`: a turn is short and the machine shared), and the random-weight
tiny cross-encoder as its reranker. A bulk request that only fills the queue is cancelled, never waited for.
What is asserted are answers and orders, never durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bench.tiny_reranker import build_tiny_reranker
from gpu_protocol.priority import PRIORITY_HEADER
from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.anyio
CAP = 8
RERANKER = "tiny-reranker"


@process_fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    models = tmp_path_factory.mktemp("models")
    build_tiny_reranker(models / RERANKER)
    svc = ServiceProcess(env={"GPU_MAX_QUEUE": str(CAP), "GPU_MAX_BATCH_SIZE": "1", "GPU_CPU_THREADS": "1",
                              "GPU_MODEL_DIRS": str(models), "MODEL_RERANK": RERANKER}).start()
    yield svc
    svc.stop()


@pytest.fixture
async def http(capped: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=capped.url, timeout=120) as client:
        await wait_until_async(lambda: nothing_queued(client), timeout=60, message="an earlier test's work is queued")
        yield client


async def queued(http: httpx.AsyncClient) -> dict[str, int]:
    status = await http.get("/status", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)})
    return status.json()["queued_by_class"]


async def nothing_queued(http: httpx.AsyncClient) -> bool:
    return sum((await queued(http)).values()) == 0


@asynccontextmanager
async def backlog(http: httpx.AsyncClient, path: str, body: dict[str, Any], name: str) -> AsyncIterator[asyncio.Task]:
    """A request of `body` on `path` that is batch by its size, inside once more than the cap of its items wait;
    cancelled (POST /cancel, by its X-Request-Id) on leaving."""
    call = asyncio.create_task(http.post(path, json=body, headers={"X-Request-Id": name}))

    async def over_the_cap() -> bool:
        return (await queued(http))["batch"] > CAP

    await wait_until_async(over_the_cap, timeout=60, interval=0.02, message=f"{name} never queued")
    try:
        yield call
    finally:
        await http.post(f"/cancel/{name}")
        await call


async def test_over_its_cap_batch_work_is_refused_with_retry_after_while_interactive_work_is_served(
    http: httpx.AsyncClient,
) -> None:
    notes = {"texts": [f"note {i} to index" for i in range(400)]}
    async with backlog(http, "/embed", notes, "caps-bulk") as bulk:
        one_more, question = await asyncio.gather(
            http.post("/embed", json={"texts": ["one more note"]}, headers={PRIORITY_HEADER: "batch"}),
            http.post("/embed", json={"texts": ["what did I note?"]}))
        assert one_more.status_code == 429, one_more.text
        assert 1 <= int(one_more.headers["retry-after"]) <= 60, one_more.headers
        assert f"batch items queued (GPU_MAX_QUEUE={CAP})" in one_more.json()["detail"], one_more.text
        assert question.status_code == 200, question.text
        assert not bulk.done(), "the bulk request was to be queued all along"
    assert bulk.result().status_code == 499


async def test_a_waiting_batch_request_finishes_while_interactive_calls_keep_coming(http: httpx.AsyncClient) -> None:
    """Callers send one-text calls back to back, so interactive work waits at nearly every turn; a batch
    request of two texts sent among them (two turns of its class: about eight in all at one in four) still
    finishes long before they would stop on their own (no starvation)."""
    callers, most_calls = 4, 150
    sent = 0
    bulk: asyncio.Future[httpx.Response] = asyncio.get_running_loop().create_future()

    async def keep_asking() -> None:
        nonlocal sent
        while not bulk.done() and sent < most_calls:
            sent += 1
            answer = await http.post("/embed", json={"texts": [f"question {sent}"]})
            assert answer.status_code == 200, answer.text

    asking = [asyncio.create_task(keep_asking()) for _ in range(callers)]
    await wait_until_async(lambda: sent > callers, timeout=60, message="the callers never got going")
    answer = await http.post("/embed", json={"texts": ["a note to index", "and another"]},
                             headers={PRIORITY_HEADER: "batch"})
    still_asking = not any(task.done() for task in asking)
    bulk.set_result(answer)
    await asyncio.gather(*asking)
    assert answer.status_code == 200, answer.text
    assert still_asking and sent < most_calls, f"the batch request waited until the callers stopped ({sent} calls)"


async def test_a_rerank_of_a_page_of_documents_is_answered_while_a_bulk_rerank_is_worked_off(
    http: httpx.AsyncClient,
) -> None:
    """A query over 3 documents is interactive; one over 2,000 is batch (`rerank_by_size`)."""
    bulk_body = {"query": "which notes mention the pool", "documents": [f"note {i} about the pool" for i in range(2000)]}
    async with backlog(http, "/v1/rerank", bulk_body, "rerank-bulk") as bulk:
        page = await http.post("/v1/rerank", json={"query": "gpu", "documents": ["a gpu", "a cat", "a pool"]})
        assert page.status_code == 200, page.text
        assert not bulk.done(), "first come, first served: the page waited for the whole bulk rerank"


async def test_a_few_bertscore_pairs_are_scored_while_a_bulk_bertscore_is_worked_off(http: httpx.AsyncClient) -> None:
    """One pair is interactive; 400 pairs are batch (`by_size` on pairs and tokens)."""
    bulk_body = {"candidates": [f"candidate summary {i}" for i in range(400)],
                 "references": [f"reference summary {i}" for i in range(400)]}
    async with backlog(http, "/bertscore", bulk_body, "bertscore-bulk") as bulk:
        pair = await http.post("/bertscore", json={"candidates": ["the cat sat"], "references": ["a cat sat"]})
        assert pair.status_code == 200, pair.text
        assert not bulk.done(), "first come, first served: the pair waited for the whole bulk BERTScore"
