"""OpenAI-compatible hosts configured as people configure them: a base URL that ends in /v1 (vLLM, LiteLLM, the
OpenAI client's own `base_url`), one without it, and a server that serves its routes with no /v1 at all
(Infinity's default). The bridge calls `<base>/embeddings`, `<base>/models` and `<base>/rerank`, and a health
check finds which spelling a URL without /v1 needs (mcp_bridge/protocols/openai.py).

The servers are `httpx.MockTransport` functions and a FakeHost (vLLM and Infinity cannot run here); our own
service as an `openai` host runs for real in tests/bridge/test_openai_paths_service.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_protocol.rerank import RerankRequest
from mcp_bridge.cli import _check
from mcp_bridge.client.client import GpuClient
from mcp_bridge.client.fleet import Fleet
from mcp_bridge.config import parse_config
from mcp_bridge.pool.health import HealthMonitor
from mcp_bridge.pool.pool import HostPool
from tests.support.fake_host import FakeHost
from tests.support.waiting import wait_until_async


def vector_for(text: str) -> list[float]:
    return [float(len(text)), 1.0, 0.0]


def answer(route: str, body: Any) -> httpx.Response | None:
    """What an OpenAI-compatible server answers at `route` (its path after its own prefix), None for a 404."""
    if route == "/models":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "e5", "object": "model"}]})
    if route == "/embeddings":
        data = [{"object": "embedding", "index": i, "embedding": vector_for(t)} for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"object": "list", "data": data, "model": body["model"]})
    if route == "/rerank":
        results = [{"index": i, "relevance_score": len(t) / 100} for i, t in enumerate(body["documents"])]
        return httpx.Response(200, json={"results": sorted(results, key=lambda r: -r["relevance_score"])})
    return None


def server(prefix: str, seen: list[str]) -> httpx.MockTransport:
    """A server whose routes live under `prefix` (`/v1`, `` for Infinity's default, `/litellm/v1`); 404 elsewhere."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        found = answer(path.removeprefix(prefix), body) if path.startswith(prefix + "/") else None
        return found or httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


SPELLINGS = [
    # (the host's URL, where the server's routes are, the paths the bridge must call, how they were chosen)
    ("http://vllm.test/v1", "/v1", "/v1", "the URL ends in /v1"),
    ("http://vllm.test/v1/", "/v1", "/v1", "the URL ends in /v1"),
    ("http://vllm.test", "/v1", "/v1", "GET /v1/models answered"),
    ("http://infinity.test", "", "", "GET /models answered"),
    ("http://proxy.test/litellm/v1", "/litellm/v1", "/litellm/v1", "the URL ends in /v1"),
    ("http://proxy.test/litellm", "/litellm/v1", "/litellm/v1", "GET /litellm/v1/models answered"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("url", "served_at", "called_at", "found_by"), SPELLINGS)
async def test_each_spelling_of_the_base_url_reaches_the_servers_routes(
    url: str, served_at: str, called_at: str, found_by: str
) -> None:
    seen: list[str] = []
    cfg = parse_config({"hosts": [{"name": "h", "url": url, "type": "openai", "model": "e5", "rerank": True}]}, "t")
    pool = HostPool(cfg, transport=server(served_at, seen))
    try:
        [row] = await Fleet(pool).health()
        gpu = GpuClient(cfg, pool)
        embedded = await gpu.embed(["a", "bbb"], normalize=False)
        ranked = await gpu.rerank(RerankRequest(query="q", documents=["a", "ccc", "bb"]))
    finally:
        await pool.close()
    assert row.ok, row
    assert row.paths == f"POST {called_at}/embeddings, POST {called_at}/rerank ({found_by})"
    assert embedded.embeddings == [vector_for("a"), vector_for("bbb")]
    assert [r.index for r in ranked.response.results] == [1, 2, 0]
    assert f"POST {called_at}/embeddings" in seen and f"POST {called_at}/rerank" in seen
    assert not any("/v1/v1" in s for s in seen), seen
    # A URL without /v1 is probed at /v1/models first; a 404 there is what sends it to the bare /models.
    probes = [s for s in seen if s.startswith("GET")]
    expected = {"the URL ends in /v1": [f"GET {called_at}/models"],
                "GET /models answered": ["GET /v1/models", "GET /models"]}.get(found_by, [f"GET {called_at}/models"])
    assert probes == expected


@pytest.mark.anyio
async def test_the_first_probe_runs_as_the_host_joins_so_a_server_without_v1_is_found_before_the_interval() -> None:
    """Infinity with no --url-prefix: the health loop's first check (at once, not after healthCheckIntervalSeconds,
    30 s here) finds /models, and the calls go to /embeddings."""
    seen: list[str] = []
    cfg = parse_config({"hosts": [{"name": "infinity", "url": "http://infinity.test", "type": "openai"}]}, "t")
    pool = HostPool(cfg, transport=server("", seen))
    monitor = HealthMonitor(pool)
    monitor.start()
    try:
        [host] = pool.hosts
        await wait_until_async(lambda: not host.protocol.paths_unknown, message="the first probe never ran")
        result = await GpuClient(cfg, pool).embed(["hello"], normalize=False)
    finally:
        await monitor.stop()
        await pool.close()
    assert result.embeddings == [vector_for("hello")]
    assert seen[:2] == ["GET /v1/models", "GET /models"] and "POST /embeddings" in seen


@pytest.mark.anyio
async def test_a_server_that_answers_neither_spelling_is_down_and_says_where_it_was_asked() -> None:
    seen: list[str] = []
    cfg = parse_config({"hosts": [{"name": "h", "url": "http://nothing.test", "type": "openai"}]}, "t")
    pool = HostPool(cfg, transport=server("/elsewhere", seen))
    try:
        [row] = await Fleet(pool).health()
    finally:
        await pool.close()
    assert not row.ok and row.status == 404
    assert row.paths is not None and "neither GET /v1/models nor /models answered" in row.paths
    assert seen == ["GET /v1/models", "GET /models"]


@pytest.mark.anyio
async def test_a_later_server_at_the_other_spelling_is_found_again() -> None:
    """The spelling is re-checked at every health check: a host replaced by a server with the other spelling
    is found (the one in use is asked first, the other on 404)."""
    seen: list[str] = []
    prefix = {"now": "/v1"}

    def handle(request: httpx.Request) -> httpx.Response:
        return server(prefix["now"], seen).handle_request(request)

    cfg = parse_config({"hosts": [{"name": "h", "url": "http://box.test", "type": "openai"}]}, "t")
    pool = HostPool(cfg, transport=httpx.MockTransport(handle))
    try:
        first = (await Fleet(pool).health())[0].paths
        prefix["now"] = ""
        second = (await Fleet(pool).health())[0].paths
    finally:
        await pool.close()
    assert first is not None and "GET /v1/models answered" in first
    assert second is not None and "GET /models answered" in second and "POST /embeddings" in second


@pytest.mark.anyio
async def test_check_says_which_path_answered(capsys: pytest.CaptureFixture[str]) -> None:
    """`gpu-bridge --check` against a real HTTP server that serves Infinity's unprefixed routes."""

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "bge-small", "object": "model"}]})

    with FakeHost([Route("/models", models)]) as fake:
        cfg = parse_config({"hosts": [{"name": "infinity", "url": fake.url, "type": "openai"}]}, "t")
        code = await _check(cfg, "test")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "infinity is called at POST /embeddings (GET /models answered)" in out
