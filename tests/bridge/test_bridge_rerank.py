"""Reranking through the bridge: the gpu_rerank tool and the HTTP bridge's POST /v1/rerank over a pool.

Real parts: three `gpu-service` processes serving the tiny random cross-encoder of
bench/tiny_reranker.py (no reranker weights exist offline; its scores mean nothing, but every
host computes the same ones), a real MCP client. TEI and OpenAI-compatible rerankers
(Infinity, vLLM, Jina) cannot run on this machine: they are `httpx.MockTransport` functions
replaying their documented request and answer shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from gpu_protocol.rerank import RerankRequest
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.http_api.openai import openai_app
from mcp_bridge.pool.errors import NoHostAvailable
from mcp_bridge.pool.pool import HostPool
from tests.support.bridges import bridge_client
from tests.support.in_process import process_fixture
from tests.support.service_probes import requests_received, v1_rerank_ranking
from tests.support.services import TINY_RERANKER, ServiceProcess, start_together

RERANKER = TINY_RERANKER
QUERY = "how do graphics cards speed up neural networks"
DOCS = [
    "GPUs run matrix multiplications in parallel.", "The cat sat on the mat.", "Bananas are yellow.",
    "Neural networks need many multiply-add operations.", "Stock markets fell today.", "A short one.",
    "Paris is the capital of France.", "CUDA kernels launch thousands of threads.", "Tea is brewed hot.",
    "Tensor cores multiply small matrices.", "Rain is expected tomorrow.",
]
SHARD = 4  # 11 documents: shards of 4, 4 and 3 over three hosts


@process_fixture(scope="module")
def rerankers(reranker_service: ServiceProcess, tiny_reranker_env: dict[str, str]) -> Iterator[list[ServiceProcess]]:
    """The shared tiny-reranker service and two more like it."""
    services = start_together([ServiceProcess(env=tiny_reranker_env) for _ in range(2)])
    try:
        yield [reranker_service, *services]
    finally:
        for svc in services:
            svc.stop()


# Scores are compared with a tolerance: a shard of 4 is padded and batched differently from one
# batch of 11, so float32 sums differ in the last bits; 1e-5 is far below the gaps between documents.


@pytest.mark.anyio
async def test_sharded_rerank_over_three_hosts_equals_one_host_scoring_everything(
    rerankers: list[ServiceProcess],
) -> None:
    expected = v1_rerank_ranking(rerankers[0].url, QUERY, DOCS)
    config = {"hosts": [{"name": f"h{i}", "url": s.url} for i, s in enumerate(rerankers)], "shardSize": SHARD}
    async with bridge_client(config) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        updates: list[tuple[float, float | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            updates.append((progress, total))

        before = [requests_received(s.url, "/v1/rerank") for s in rerankers]
        result = await c.call_tool("gpu_rerank", {"query": QUERY, "documents": DOCS, "top_n": 5},
                                   progress_callback=on_progress)
        sent = [requests_received(s.url, "/v1/rerank") - b for s, b in zip(rerankers, before, strict=True)]
        assert not result.is_error, result.content[0].text
        jsonschema.validate(result.structured_content, tools["gpu_rerank"].output_schema)
        everything = await c.call_tool("gpu_rerank", {"query": QUERY, "documents": DOCS, "top_n": None})
        info = await c.call_tool("gpu_info", {})
    out = result.structured_content
    assert [m["index"] for m in out["matches"]] == [e["index"] for e in expected[:5]]
    for match, want in zip(out["matches"], expected, strict=False):
        assert abs(match["score"] - want["relevance_score"]) < 1e-5
        assert match["text"] == DOCS[match["index"]]
    # Three shards spread over the pool: each host was sent one. The answers may come from fewer: a host that
    # finished first runs a hedged copy of a shard another host is late with (client/dispatch.py), and
    # h0, which answered v1_rerank_ranking, has no first-request warm-up left to pay.
    assert out["model"] == RERANKER and all(n >= 1 for n in sent) and 3 <= sum(sent) <= 6, sent
    assert set(out["hosts"]) <= {"h0", "h1", "h2"}
    assert [m["index"] for m in everything.structured_content["matches"]] == [e["index"] for e in expected]
    assert f"#{expected[0]['index']}" in result.content[0].text
    assert updates == [(1, 3), (2, 3), (3, 3)], "one progress notification per shard"
    assert f"{RERANKER} (rerank)" in info.content[0].text, "gpu_info lists the reranker with its kind"


@pytest.mark.anyio
async def test_gpu_rerank_refuses_bad_input_naming_the_field(rerankers: list[ServiceProcess]) -> None:
    async with bridge_client({"hosts": [{"url": rerankers[0].url}]}) as c:
        blank = await c.call_tool("gpu_rerank", {"query": QUERY, "documents": ["fine", "  "]})
        zero = await c.call_tool("gpu_rerank", {"query": QUERY, "documents": ["fine"], "top_n": 0})
    assert blank.is_error and "documents[1]" in blank.content[0].text
    assert zero.is_error and "top_n" in zero.content[0].text


@pytest.mark.anyio
async def test_http_bridge_v1_rerank_in_cohere_shape(rerankers: list[ServiceProcess]) -> None:
    expected = v1_rerank_ranking(rerankers[1].url, QUERY, DOCS)
    cfg = parse_config({"hosts": [{"url": s.url} for s in rerankers], "shardSize": SHARD,
                        "limits": {"maxBatchSize": 20}}, "test")
    pool = HostPool(cfg)
    app = openai_app(GpuClient(cfg, pool), cfg)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as http:
            r = await http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 3,
                                                    "return_documents": True})
            too_many = await http.post("/v1/rerank", json={"query": QUERY, "documents": ["x"] * 21})
            blank = await http.post("/v1/rerank", json={"query": QUERY, "documents": ["x", {"text": " "}]})
    finally:
        await pool.close()
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["index"] for x in body["results"]] == [e["index"] for e in expected[:3]]
    assert all(x["document"] == {"text": DOCS[x["index"]]} for x in body["results"])
    assert body["model"] == RERANKER and body["usage"]["total_tokens"] > 0
    assert too_many.status_code == 413 and too_many.json()["error"]["param"] == "documents"
    assert blank.status_code == 422 and "documents[1]" in blank.json()["error"]["message"]


# --------------------------------------------------------------------------- other host types (replayed)


def score_of(text: str) -> float:
    """A fake reranker: longer documents are more relevant."""
    return len(text) / 100


def replayed_hosts(seen: list[tuple[str, str, Any]]) -> httpx.MockTransport:
    """tei (POST /rerank -> [{index, score}], best first), an openai-compatible reranker (POST /v1/rerank
    -> {results: [{index, relevance_score}]}), and an openai host without a reranker."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.url.host, request.url.path, body))
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        if request.url.host == "tei" and request.url.path == "/rerank":
            hits = [{"index": i, "score": score_of(t)} for i, t in enumerate(body["texts"])]
            return httpx.Response(200, json=sorted(hits, key=lambda h: -h["score"]))
        if request.url.host == "infinity" and request.url.path == "/v1/rerank":
            results = [{"index": i, "relevance_score": score_of(t), "document": None}
                       for i, t in enumerate(body["documents"])]
            results = sorted(results, key=lambda h: -h["relevance_score"])[: body["top_n"]]
            return httpx.Response(200, json={"object": "rerank", "results": results, "model": "bge-reranker",
                                             "usage": {"total_tokens": 42}})
        return httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


@pytest.mark.anyio
async def test_tei_and_openai_rerankers_share_the_documents_and_plain_openai_hosts_are_never_picked() -> None:
    seen: list[tuple[str, str, Any]] = []
    cfg = parse_config({"shardSize": 2, "hosts": [
        {"name": "tei", "url": "http://tei", "type": "tei", "rerank": True, "model": "bge-reranker"},
        {"name": "infinity", "url": "http://infinity", "type": "openai", "rerank": True, "model": "bge-reranker"},
        {"name": "plain", "url": "http://plain", "type": "openai", "model": "embedder"},
    ]}, "test")
    pool = HostPool(cfg, transport=replayed_hosts(seen))
    try:
        outcome = await GpuClient(cfg, pool).rerank(RerankRequest(query="q", documents=DOCS, top_n=4))
    finally:
        await pool.close()
    want = sorted(range(len(DOCS)), key=lambda i: (-score_of(DOCS[i]), i))[:4]
    assert [r.index for r in outcome.response.results] == want
    assert outcome.hosts == ["infinity", "tei"]
    assert all(host != "plain" for host, _, _ in seen)
    tei_bodies = [b for h, p, b in seen if h == "tei"]
    assert all(b["truncate"] is True and b["raw_scores"] is False and b["return_text"] is False for b in tei_bodies)
    openai_bodies = [b for h, p, b in seen if h == "infinity"]
    assert all(b["top_n"] == len(b["documents"]) and b["model"] == "bge-reranker" for b in openai_bodies)


@pytest.mark.anyio
async def test_a_pool_without_a_reranker_says_so() -> None:
    cfg = parse_config({"hosts": [{"url": "http://plain", "type": "openai"}, {"url": "http://tei", "type": "tei"}]},
                       "test")
    pool = HostPool(cfg, transport=replayed_hosts([]))
    try:
        with pytest.raises(NoHostAvailable, match="no configured host can serve rerank.*rerank: true"):
            await GpuClient(cfg, pool).rerank(RerankRequest(query="q", documents=["a"]))
    finally:
        await pool.close()


def test_the_rerank_option_is_in_the_plugin_schema() -> None:
    manifest = json.loads((Path(__file__).resolve().parents[2] / "openclaw.plugin.json").read_text())
    host = manifest["configSchema"]["properties"]["hosts"]["items"]["properties"]
    assert host["rerank"]["type"] == "boolean"


@pytest.mark.anyio
async def test_equal_scores_from_different_shards_rank_by_global_index() -> None:
    """Every document scores the same: the merged order is the input order, whichever shard finishes first."""

    def flat(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200)
        texts = json.loads(request.content)["texts"]
        return httpx.Response(200, json=[{"index": i, "score": 0.5} for i in reversed(range(len(texts)))])

    cfg = parse_config({"shardSize": 3, "hosts": [
        {"name": "a", "url": "http://a", "type": "tei", "rerank": True},
        {"name": "b", "url": "http://b", "type": "tei", "rerank": True},
    ]}, "test")
    pool = HostPool(cfg, transport=httpx.MockTransport(flat))
    try:
        outcome = await GpuClient(cfg, pool).rerank(RerankRequest(query="q", documents=DOCS, top_n=7))
    finally:
        await pool.close()
    assert [r.index for r in outcome.response.results] == list(range(7))
