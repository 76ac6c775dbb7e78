"""The bridge's `clients` over HTTP, with real processes: a `gpu-bridge --transport http` subprocess over a
fake GPU host (tests/support/fake_host.py), called by the official `openai` client, httpx and a real MCP
client. Unknown tokens get 401 everywhere, a tool, route or model outside a client's scope 403 (and over MCP a
tool error, the tool not listed), a client over its quota 429 with Retry-After and is served after waiting it,
while another client is served all along; the single `--auth-token` works as it did."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_protocol.priority import PRIORITY_HEADER, TENANT_HEADER
from mcp_bridge.access.scopes import ROUTE_TOOLS, TOOL_TASKS
from mcp_bridge.client_rights import DIAGNOSTIC_TOOLS, WORK_TOOLS
from mcp_bridge.mcp.access import MODEL_ARGUMENTS
from tests.support.bridges import bridge_env
from tests.support.fake_host import FakeHost

openai = pytest.importorskip("openai")

READY = re.compile(r"is ready at (http://\S+?)/mcp\s")
AGENT, INDEXER, EMBEDDER, AUTH = "agent-token-0123", "indexer-token-0123", "embedder-token-0123", "auth-token-0123"
WATCHER, PINNED = "watcher-token-0123", "pinned-token-0123"
PINNED_MODELS = {"embed": ["m-a"], "rerank": ["r-a"], "bertscore": ["b-a"], "transcribe": ["w-a"], "speak": ["v-a"]}
CLIENTS = [
    {"name": "agent", "token": AGENT, "requestsPerMinute": 600},
    {"name": "indexer", "token": INDEXER, "priority": "batch", "itemsPerMinute": 60},
    {"name": "embedder", "token": EMBEDDER, "tools": ["gpu_embed"], "models": {"embed": ["m-a"]}},
    {"name": "watcher", "token": WATCHER, "tools": []},  # the diagnostics only
    {"name": "pinned", "token": PINNED, "models": PINNED_MODELS},  # every tool, one model per task
]
V1_ROUTES = [("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("POST", "/v1/rerank"), ("POST", "/v2/rerank"),
             ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations"), ("POST", "/v1/audio/speech")]


async def healthy(request: Request) -> Response:
    return JSONResponse({"status": "ok", "device": "cpu"})


HOST_SAW: list[dict[str, str]] = []
"""The headers of every /embed call the module's fake host answered (for the class and tenant it was told)."""


async def embed(request: Request) -> Response:
    body = await request.json()
    HOST_SAW.append({k.lower(): v for k, v in request.headers.items()})
    n = len(body["texts"])
    return JSONResponse({"model": body.get("model") or "m-a", "dimensions": 3, "count": n, "truncated": 0,
                         "embeddings": [[1.0, 0.0, 0.0]] * n})


@pytest.fixture(scope="module")
def fake_host() -> Iterator[FakeHost]:
    with FakeHost([Route("/health", healthy), Route("/embed", embed, methods=["POST"])]) as host:
        yield host


@contextmanager
def http_bridge(tmp_path: Path, config: dict[str, Any], *extra: str) -> Iterator[str]:
    """`gpu-bridge --transport http --port 0 --config FILE`; yields its base URL, stopped by closing its stdin."""
    path = tmp_path / f"bridge-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    log = path.with_suffix(".log")
    args = [sys.executable, "-m", "mcp_bridge", "--transport", "http", "--port", "0", "--exit-with-stdin",
            "--config", str(path), *extra]
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=bridge_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True)
    try:
        assert proc.stdout is not None
        seen, deadline = "", time.monotonic() + 60
        while not (match := READY.search(seen)):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"the bridge did not get ready:\n{log.read_text()}"
            seen += line
        yield match.group(1)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def bridge(fake_host: FakeHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = {"hosts": [{"name": "fake", "url": fake_host.url}], "clients": CLIENTS}
    with http_bridge(tmp_path_factory.mktemp("clients"), config) as base:
        yield base


def v1(base: str, token: str) -> Any:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=30)


def test_an_unknown_or_missing_token_is_refused_on_every_route_and_on_mcp(bridge: str) -> None:
    for token in (None, "not-a-client-token"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path in V1_ROUTES:
            answer = httpx.request(method, f"{bridge}{path}", headers=headers, json={})
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["type"] == "authentication_error"
        mcp = httpx.post(f"{bridge}/mcp", headers=headers, json={})
        assert mcp.status_code == 401 and "unauthorized" in mcp.json()["detail"]
        assert mcp.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        v1(bridge, "not-a-client-token").embeddings.create(input=["a"], model="m-a")


def test_a_route_or_model_outside_the_scope_is_403_naming_what_is_allowed(bridge: str) -> None:
    embedder = v1(bridge, EMBEDDER)
    assert len(embedder.embeddings.create(input=["a", "b"], model="m-a").data) == 2
    with pytest.raises(openai.PermissionDeniedError) as err:
        embedder.embeddings.create(input=["a"], model="m-b")
    error = err.value.response.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "out_of_scope"
    assert "may not use the embed model 'm-b'; it may use: m-a" in error["message"]
    for path in ("/v1/rerank", "/v2/rerank"):
        refused = httpx.post(f"{bridge}{path}", headers={"Authorization": f"Bearer {EMBEDDER}"},
                             json={"query": "q", "documents": ["d"]})
        assert refused.status_code == 403, refused.text
        assert f"may not use {path} (tool gpu_rerank); it may use: gpu_health, gpu_info, gpu_status, gpu_embed" in \
            refused.json()["error"]["message"]
    assert embedder.models.list().data is not None, "/v1/models is open to every known client"


WORK_ROUTES = sorted(path for path, tool in ROUTE_TOOLS.items() if tool not in DIAGNOSTIC_TOOLS)
AUDIO_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations")
LISTINGS = ("/v1/audio/voices",)
"""Work routes that list rather than run (GET, no model to refuse)."""
TOOL_CALLS: dict[str, dict[str, Any]] = {
    "gpu_embed": {"texts": ["a"]},
    "gpu_similarity": {"texts": ["a"], "texts_b": ["b"]},
    "gpu_rerank": {"query": "q", "documents": ["d"]},
    "gpu_bertscore": {"candidates": ["a"], "references": ["b"]},
    "gpu_transcribe": {"audio_base64": "UklGRgAAAAA=", "filename": "note.wav"},
    "gpu_speak": {"text": "hello"},
}
"""A well-formed call of every tool a client's `tools` may grant."""


def route_call(base: str, token: str, path: str, model: str | None = None) -> httpx.Response:
    """A well-formed call of the `/v1` route `path`, naming `model` when given."""
    headers, named = {"Authorization": f"Bearer {token}"}, ({"model": model} if model else {})
    if path in LISTINGS:
        return httpx.get(f"{base}{path}", headers=headers)
    if path in AUDIO_ROUTES:
        return httpx.post(f"{base}{path}", headers=headers, data=named,
                          files={"file": ("note.wav", b"RIFF" + bytes(64), "audio/wav")})
    body = {"/v1/embeddings": {"input": ["a"]}, "/v1/audio/speech": {"input": "hello", "voice": "alloy"}}.get(
        path, {"query": "q", "documents": ["d"]})
    return httpx.post(f"{base}{path}", headers=headers, json={**body, **named})


@pytest.mark.parametrize("path", WORK_ROUTES)
def test_every_v1_route_outside_the_tools_is_403_naming_what_is_allowed(bridge: str, path: str) -> None:
    refused = route_call(bridge, WATCHER, path)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "out_of_scope", error
    assert f"may not use {path} (tool {ROUTE_TOOLS[path]}); it may use: gpu_health, gpu_info, gpu_status" == \
        error["message"].split("'watcher' ", 1)[1], error


@pytest.mark.parametrize("path", [path for path in WORK_ROUTES if path not in LISTINGS])
def test_every_v1_route_refuses_a_model_outside_the_clients_list(bridge: str, path: str) -> None:
    task = TOOL_TASKS[ROUTE_TOOLS[path]]
    refused = route_call(bridge, PINNED, path, model="not-on-its-list")
    assert refused.status_code == 403, refused.text
    assert f"may not use the {task} model 'not-on-its-list'; it may use: {PINNED_MODELS[task][0]}" in \
        refused.json()["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("tool", WORK_TOOLS)
async def test_every_mcp_tool_outside_the_scope_is_unlisted_and_a_tool_error(bridge: str, tool: str) -> None:
    async with mcp_client(bridge, WATCHER) as watcher:
        assert {t.name for t in (await watcher.list_tools()).tools} == set(DIAGNOSTIC_TOOLS)
        refused = await watcher.call_tool(tool, TOOL_CALLS[tool])
        assert refused.is_error, refused
        assert f"may not use tool {tool}; it may use: gpu_health, gpu_info, gpu_status" in refused.content[0].text
    task, model_argument = TOOL_TASKS[tool], MODEL_ARGUMENTS.get(tool, ("model",))[0]
    async with mcp_client(bridge, PINNED) as pinned:
        wrong = await pinned.call_tool(tool, {**TOOL_CALLS[tool], model_argument: "not-on-its-list"})
        assert wrong.is_error, wrong
        assert f"may not use the {task} model 'not-on-its-list'; it may use: {PINNED_MODELS[task][0]}" in \
            wrong.content[0].text


def test_input_type_on_v1_embeddings_reaches_the_host_as_the_class(bridge: str) -> None:
    """Two short texts: interactive by size, unless `input_type` says they are documents (OpenClaw's indexing)."""
    for input_type, expected in (("document", "batch"), ("query", "interactive"), ("passage", "batch"),
                                 (None, "interactive")):
        HOST_SAW.clear()
        body = {"input": ["a note to index", "and another"], "model": "m-a"}
        answer = httpx.post(f"{bridge}/v1/embeddings", headers={"Authorization": f"Bearer {AGENT}"},
                            json=body | ({"input_type": input_type} if input_type else {}))
        assert answer.status_code == 200, answer.text
        told = [(h.get(PRIORITY_HEADER.lower()), h.get(TENANT_HEADER.lower())) for h in HOST_SAW]
        assert told == [(expected, "agent")], (input_type, told)


def test_a_bad_priority_header_is_400(bridge: str) -> None:
    answer = httpx.post(f"{bridge}/v1/embeddings", headers={"Authorization": f"Bearer {AGENT}",
                        "X-GPU-Priority": "urgent"}, json={"input": ["a"], "model": "m-a"})
    assert answer.status_code == 400 and "X-GPU-Priority must be one of interactive, batch" in answer.text


def test_over_quota_is_429_with_retry_after_then_served_while_another_client_is_served(bridge: str) -> None:
    indexer, agent = v1(bridge, INDEXER), v1(bridge, AGENT)
    first = indexer.embeddings.with_raw_response.create(input=[f"t{i}" for i in range(60)], model="m-a")
    assert first.headers["x-ratelimit-remaining-items"] == "0"
    with pytest.raises(openai.RateLimitError) as err:
        indexer.embeddings.create(input=["one more", "and another"], model="m-a")
    refused = err.value.response
    retry_after = int(refused.headers["retry-after"])
    assert retry_after == 2 and refused.headers["x-ratelimit-remaining-items"] == "0"
    assert refused.json()["error"]["code"] == "over_quota" and "itemsPerMinute" in refused.json()["error"]["message"]
    served = agent.embeddings.with_raw_response.create(input=["an agent's query"], model="m-a")
    assert int(served.headers["x-ratelimit-remaining-requests"]) >= 590, "the agent is within its own quota"
    assert "x-ratelimit-remaining-items" not in served.headers, "it has no itemsPerMinute"
    too_large = httpx.post(f"{bridge}/v1/embeddings", headers={"Authorization": f"Bearer {INDEXER}"},
                           json={"input": ["x"] * 61, "model": "m-a"})
    assert too_large.status_code == 413 and "split it" in too_large.text
    time.sleep(retry_after)
    assert len(indexer.embeddings.create(input=["one more", "and another"], model="m-a").data) == 2


def scrape(base: str, token: str) -> dict[str, float]:
    """The bridge's /metrics as {'name{labels}': value}."""
    answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
    samples = {}
    for line in answer.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_show_each_host_tenant_and_client_and_what_its_quota_leaves(bridge: str) -> None:
    assert httpx.get(f"{bridge}/metrics").status_code == 401
    assert httpx.get(f"{bridge}/metrics", headers={"Authorization": "Bearer not-a-client-token"}).status_code == 401
    before = scrape(bridge, EMBEDDER)  # open to every known client, as gpu_status is
    v1(bridge, AGENT).embeddings.create(input=["a", "b", "c"], model="m-a")
    refused = httpx.post(f"{bridge}/v1/rerank", headers={"Authorization": f"Bearer {EMBEDDER}"},
                         json={"query": "q", "documents": ["d"]})
    assert refused.status_code == 403
    after = scrape(bridge, EMBEDDER)

    def grew(key: str) -> float:
        return after[key] - before.get(key, 0.0)

    assert grew('gpu_bridge_client_requests_total{client="agent"}') == 1
    assert grew('gpu_bridge_client_items_total{client="agent"}') == 3
    assert grew('gpu_bridge_tenant_items_total{tenant="agent"}') == 3, "the pool sent its 3 texts as the agent's"
    assert grew('gpu_bridge_client_refused_total{client="embedder",reason="scope"}') == 1
    assert grew('gpu_bridge_host_served_total{host="fake"}') >= 1
    assert after['gpu_bridge_host_state{host="fake",state="healthy"}'] == 1
    assert 0 <= after['gpu_bridge_client_requests_left{client="agent"}'] <= 600, "requestsPerMinute: 600 (refilling)"
    assert 'gpu_bridge_client_items_left{client="indexer"}' in after, "the indexer has an itemsPerMinute"
    assert 'gpu_bridge_client_items_left{client="agent"}' not in after, "the agent has none"
    assert after['gpu_bridge_class_waiting{class="interactive"}'] == 0


def test_the_auth_token_alone_works_as_before(fake_host: FakeHost, tmp_path: Path) -> None:
    with http_bridge(tmp_path, {"hosts": [{"url": fake_host.url}]}, "--auth-token", AUTH) as base:
        answer = v1(base, AUTH).embeddings.with_raw_response.create(input=["a"], model="m-a")
        assert answer.http_response.status_code == 200 and "x-ratelimit-remaining-requests" not in answer.headers
        assert httpx.post(f"{base}/v1/embeddings", json={"input": ["a"]}).status_code == 401
        assert httpx.post(f"{base}/mcp", headers={"Authorization": "Bearer wrong-token"}, json={}).status_code == 401


@asynccontextmanager
async def mcp_client(base: str, token: str, transport: str = "http") -> AsyncIterator[Client]:
    import httpx2
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    if transport == "sse":
        async with Client(sse_client(f"{base}/sse", headers={"Authorization": f"Bearer {token}"})) as client:
            yield client
        return
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            yield client


@pytest.mark.anyio
async def test_over_mcp_a_client_sees_only_its_tools_and_a_tool_error_outside_its_scope(bridge: str) -> None:
    async with mcp_client(bridge, EMBEDDER) as embedder:
        listed = {t.name for t in (await embedder.list_tools()).tools}
        assert listed == {"gpu_health", "gpu_info", "gpu_status", "gpu_embed"}
        refused = await embedder.call_tool("gpu_rerank", {"query": "q", "documents": ["d"]})
        assert refused.is_error
        assert "may not use tool gpu_rerank; it may use: gpu_health, gpu_info, gpu_status, gpu_embed" in \
            refused.content[0].text
        wrong_model = await embedder.call_tool("gpu_embed", {"texts": ["a"], "model": "m-b"})
        assert wrong_model.is_error and "it may use: m-a" in wrong_model.content[0].text
        served = await embedder.call_tool("gpu_embed", {"texts": ["a"]})
        assert not served.is_error and served.structured_content["model"] == "m-a", "its first model"
        status = await embedder.call_tool("gpu_status", {})
        assert not status.is_error
        own = status.structured_content["sharing"]["tenants"]["embedder"]["quota_left"]
        assert own["refused_scope"] >= 2 and own["refused_quota"] == 0, own
        assert "tenant embedder:" in status.content[0].text
    async with mcp_client(bridge, AGENT) as agent:
        everything = {t.name for t in (await agent.list_tools()).tools}
        assert everything > listed and {"gpu_rerank", "gpu_speak", "gpu_transcribe"} <= everything


@pytest.mark.anyio
async def test_over_mcp_a_client_over_quota_gets_a_tool_error_saying_when_to_retry(
    fake_host: FakeHost, tmp_path: Path
) -> None:
    config = {"hosts": [{"url": fake_host.url}],
              "clients": [{"name": "slow", "token": INDEXER, "requestsPerMinute": 60},
                          {"name": "other", "token": AGENT, "requestsPerMinute": 60}]}
    with http_bridge(tmp_path, config) as base:
        async with mcp_client(base, INDEXER) as slow, mcp_client(base, AGENT) as other:
            for _ in range(80):
                answer = await slow.call_tool("gpu_embed", {"texts": ["a"]})
                if answer.is_error:
                    break
            assert answer.is_error and "over this client's requestsPerMinute; retry in 1 s" in answer.content[0].text
            assert not (await other.call_tool("gpu_embed", {"texts": ["b"]})).is_error
            await anyio.sleep(1)
            assert not (await slow.call_tool("gpu_embed", {"texts": ["a"]})).is_error


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_every_call_reaches_the_pool_as_its_client_with_its_class(fake_host: FakeHost, transport: str) -> None:
    """`current_caller` as the pool reads it, for calls over real HTTP (uvicorn on loopback, in this loop): over
    MCP (streamable HTTP; SSE, whose handlers run in the task of the client's GET /sse), and on /v1. A batch client's calls are batch
    whatever they ask; an interactive client may ask for batch with X-GPU-Priority."""
    import uvicorn

    from mcp_bridge.access.gate import Access
    from mcp_bridge.bridge import Bridge
    from mcp_bridge.config import parse_config
    from mcp_bridge.embedded import free_port
    from mcp_bridge.http_api.app import http_app
    from mcp_bridge.http_api.openai import openai_app
    from mcp_bridge.mcp.server import build_server
    from mcp_bridge.pool.caller import Caller, current_caller

    config = parse_config({"hosts": [{"url": fake_host.url}], "clients": CLIENTS}, "t")
    seen: list[Caller] = []
    async with Bridge(config, allow_embedded=False) as bridge:
        pooled = bridge.gpu.embed_request

        async def recording(request: Any, **options: Any) -> Any:
            seen.append(current_caller.get())
            return await pooled(request, **options)

        bridge.gpu.embed_request = recording  # type: ignore[method-assign]
        access = Access.from_config(config, None, {})
        app = http_app(build_server(bridge, access), transport, "127.0.0.1", access,
                       openai_app(bridge.gpu, config, access=access))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            while not server.started:
                await anyio.sleep(0.02)
            base = f"http://127.0.0.1:{port}"
            async with mcp_client(base, INDEXER, transport) as indexer:
                for _ in range(2):
                    assert not (await indexer.call_tool("gpu_embed", {"texts": ["q"]})).is_error
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                answer = await http.post("/v1/embeddings", json={"input": ["q"], "model": "m-a"},
                                         headers={"Authorization": f"Bearer {AGENT}", "X-GPU-Priority": "batch"})
                assert answer.status_code == 200, answer.text
                answer = await http.post("/v1/embeddings", json={"input": ["q"], "model": "m-a"},
                                         headers={"Authorization": f"Bearer {INDEXER}", "X-GPU-Priority": "interactive"})
                assert answer.status_code == 200, answer.text
            server.should_exit = True
    assert [(c.tenant, c.priority("interactive")) for c in seen] == [
        ("indexer", "batch"), ("indexer", "batch"), ("agent", "batch"), ("indexer", "batch")]
    assert seen[2].asked == "batch" and seen[2].highest == "interactive"
