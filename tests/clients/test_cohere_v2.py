"""Cohere's v2 rerank (`POST /v2/rerank`) with Cohere's own Python SDK (`cohere.ClientV2`), against a real
`gpu-service` serving the tiny random cross-encoder of bench/tiny_reranker.py, and against the HTTP bridge's
`/v2/rerank` over a pool of it. The scores mean nothing; what is checked is that v2 ranks exactly as v1 does,
that the SDK parses every answer, and that bad input is refused naming the field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.http_api.cohere import NOT_APPLIED
from mcp_bridge.http_api.openai import openai_app
from mcp_bridge.pool.pool import HostPool
from tests.support.service_probes import v1_rerank_ranking
from tests.support.services import TINY_RERANKER, ServiceProcess

cohere = pytest.importorskip("cohere")

RERANKER = TINY_RERANKER
QUERY = "how do graphics cards speed up neural networks"
DOCS = [
    "GPUs run matrix multiplications in parallel.", "The cat sat on the mat.", "Bananas are yellow.",
    "Neural networks need many multiply-add operations.", "Stock markets fell today.", "A short one.",
    "Paris is the capital of France.", "CUDA kernels launch thousands of threads.", "Tea is brewed hot.",
]
LONG_DOC = "word " * 600  # longer than the model's 512 tokens with the query


@pytest.fixture
def reranker(reranker_service: ServiceProcess) -> ServiceProcess:
    """The shared service with the tiny cross-encoder as its default reranker."""
    return reranker_service


def same_ranking(got: Any, expected: list[dict[str, Any]]) -> None:
    """The SDK's parsed results against v1's: same order, scores equal to 1e-5 (other batch layouts)."""
    assert [r.index for r in got] == [e["index"] for e in expected]
    assert all(abs(r.relevance_score - e["relevance_score"]) < 1e-5 for r, e in zip(got, expected, strict=True))


def test_the_sdk_reranks_on_the_service_as_v1_does(reranker: ServiceProcess) -> None:
    expected = v1_rerank_ranking(reranker.url, QUERY, DOCS)
    co = cohere.ClientV2(api_key="unused", base_url=reranker.url)
    answer = co.rerank(model=RERANKER, query=QUERY, documents=DOCS, top_n=4)
    same_ranking(answer.results, expected[:4])
    assert answer.id and answer.meta.api_version.version == "2"
    assert answer.meta.tokens.input_tokens > 0 and answer.meta.warnings is None
    everything = co.rerank(model=RERANKER, query=QUERY, documents=DOCS)  # top_n omitted: all of them
    same_ranking(everything.results, expected)


def test_max_tokens_per_doc_cuts_each_document_before_scoring(reranker: ServiceProcess) -> None:
    co = cohere.ClientV2(api_key="unused", base_url=reranker.url)
    short = "A short one."  # 4 tokens: left as it is
    cut = co.rerank(model=RERANKER, query=QUERY, documents=[LONG_DOC, short], max_tokens_per_doc=5)
    whole = co.rerank(model=RERANKER, query=QUERY, documents=[LONG_DOC, short])
    as_five_words = v1_rerank_ranking(reranker.url, QUERY, ["word word word word word", short])
    scores = {r.index: r.relevance_score for r in cut.results}
    assert all(abs(scores[e["index"]] - e["relevance_score"]) < 1e-5 for e in as_five_words), (scores, as_five_words)
    assert cut.meta.warnings is None and cut.meta.tokens.input_tokens < whole.meta.tokens.input_tokens
    # Uncut, the long document fills the model's maximum and is cut there: v2 says so in meta.warnings.
    assert whole.meta.warnings == ["1 (query, document) pair(s) were cut at the model's maximum length"]


@pytest.mark.parametrize(("body", "field"), [
    ({"query": QUERY, "documents": ["fine", "  "]}, "documents[1]"),
    ({"query": " ", "documents": ["fine"]}, "query"),
    ({"query": QUERY, "documents": [{"text": "objects are v1's"}]}, "documents"),
    ({"query": QUERY, "documents": ["x"], "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
    ({"query": QUERY, "documents": ["x"], "relevant_spans": {"mode": "enabled"}}, "relevant_spans"),
])
def test_bad_v2_requests_are_refused_naming_the_field(reranker: ServiceProcess, body: dict[str, Any],
                                                      field: str) -> None:
    r = httpx.post(f"{reranker.url}/v2/rerank", json={"model": RERANKER, **body}, timeout=60)
    assert r.status_code == 422 and field in r.text, r.text


def test_the_sdk_raises_its_own_error_for_a_refusal(reranker: ServiceProcess) -> None:
    co = cohere.ClientV2(api_key="unused", base_url=reranker.url)
    with pytest.raises(cohere.errors.UnprocessableEntityError) as err:
        co.rerank(model=RERANKER, query=QUERY, documents=["fine", ""])
    assert "documents[1]" in str(err.value.body)


# --------------------------------------------------------------------------- through the HTTP bridge


@asynccontextmanager
async def bridge_sdk(svc: ServiceProcess, **config: Any) -> AsyncIterator[Any]:
    """The async SDK against the HTTP bridge's /v2 (in process, over ASGI), over a pool of `svc`."""
    cfg = parse_config({"hosts": [{"name": "h0", "url": svc.url}], **config}, "test")
    pool = HostPool(cfg)
    app = openai_app(GpuClient(cfg, pool), cfg)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge",
                                     timeout=60) as http:
            yield cohere.AsyncClientV2(api_key="unused", base_url="http://bridge", httpx_client=http)
    finally:
        await pool.close()


@pytest.mark.anyio
async def test_the_sdk_reranks_through_the_bridge_sharded_as_one_host_does(reranker: ServiceProcess) -> None:
    expected = v1_rerank_ranking(reranker.url, QUERY, DOCS)
    async with bridge_sdk(reranker, shardSize=3) as co:  # 9 documents: three shards, merged by the bridge
        answer = await co.rerank(model=RERANKER, query=QUERY, documents=DOCS, top_n=5)
        noted = await co.rerank(model=RERANKER, query=QUERY, documents=DOCS[:2], max_tokens_per_doc=64)
    same_ranking(answer.results, expected[:5])
    assert answer.id and answer.meta.api_version.version == "2" and answer.meta.tokens.input_tokens > 0
    assert answer.meta.warnings is None
    assert noted.meta.warnings == [NOT_APPLIED]


@pytest.mark.anyio
async def test_the_bridge_refuses_bad_v2_requests_in_its_error_shape(reranker: ServiceProcess) -> None:
    cfg = parse_config({"hosts": [{"name": "h0", "url": reranker.url}], "limits": {"maxBatchSize": 3}}, "test")
    pool = HostPool(cfg)
    app = openai_app(GpuClient(cfg, pool), cfg)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as http:
            blank = await http.post("/v2/rerank", json={"model": RERANKER, "query": QUERY, "documents": ["a", ""]})
            too_many = await http.post("/v2/rerank", json={"model": RERANKER, "query": QUERY, "documents": DOCS})
            unknown = await http.post("/v2/rerank", json={"query": QUERY, "documents": ["a"], "return_documents": True})
    finally:
        await pool.close()
    assert blank.status_code == 422 and "documents[1]" in blank.json()["error"]["message"]
    assert too_many.status_code == 413 and too_many.json()["error"]["param"] == "documents"
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "return_documents"
