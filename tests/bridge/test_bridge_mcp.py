"""The bridge as an agent sees it: real MCP clients (in memory, stdio, HTTP, SSE) against
real GPU services on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.embedded import free_port
from mcp_bridge.mcp.server import build_server
from tests.support import ROOT
from tests.support.bridges import bridge_client, bridge_env, bridge_mcp_url
from tests.support.service_probes import batches_run
from tests.support.services import ServiceProcess
from tests.support.waiting import unchanged_for, wait_until_async

TOOLS = {"gpu_health", "gpu_info", "gpu_status", "gpu_embed", "gpu_bertscore", "gpu_similarity",
         "gpu_rerank", "gpu_transcribe", "gpu_speak"}
KEY = "s3cret-test-key-123"


def text(result: Any) -> str:
    return result.content[0].text


# --------------------------------------------------------------------------- contracts


@pytest.mark.anyio
async def test_tools_and_their_schemas(service: ServiceProcess) -> None:
    async with bridge_client({"hosts": [{"url": service.url}], "limits": {"maxBatchSize": 500, "maxTextLength": 999}}) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t.title and t.description and len(t.description) > 60
        assert t.annotations.read_only_hint and t.annotations.idempotent_hint and t.annotations.open_world_hint
        assert t.output_schema and t.output_schema["type"] == "object"
    embed = tools["gpu_embed"].input_schema
    assert embed["required"] == ["texts"]
    assert embed["properties"]["texts"]["maxItems"] == 500 and embed["properties"]["texts"]["minItems"] == 1
    assert embed["properties"]["texts"]["items"]["maxLength"] == 999
    assert set(embed["properties"]) == {"texts", "model", "normalize", "dimensions", "host", "encoding"}
    score = tools["gpu_bertscore"].input_schema
    assert set(score["required"]) == {"candidates", "references"}
    assert {"lang", "model_type", "model", "idf", "rescale_with_baseline"} <= set(score["properties"])
    assert embed["properties"]["encoding"]["enum"] == ["auto", "float", "base64"]
    assert tools["gpu_embed"].output_schema["required"][:1] == ["encoding"]
    sim = tools["gpu_similarity"].input_schema
    mode = next(s for s in sim["properties"]["mode"]["anyOf"] if "enum" in s)
    assert sim["required"] == ["texts"] and mode["enum"] == ["pairs", "query", "matrix"]
    assert sim["properties"]["mode"]["default"] is None, "the mode follows from the arguments unless given"
    texts_b = next(s for s in sim["properties"]["texts_b"]["anyOf"] if s["type"] == "array")
    assert texts_b["maxItems"] == 500 and texts_b["items"]["maxLength"] == 999
    query = next(s for s in sim["properties"]["query"]["anyOf"] if s["type"] == "string")
    assert sim["properties"]["top_k"]["maximum"] == 1000 and query["maxLength"] == 999
    assert set(sim["properties"]) == {"texts", "mode", "query", "texts_b", "top_k", "model", "host"}
    rerank = tools["gpu_rerank"]
    assert set(rerank.input_schema["required"]) == {"query", "documents"}
    assert rerank.input_schema["properties"]["documents"]["maxItems"] == 500
    assert set(rerank.input_schema["properties"]) == {"query", "documents", "top_n", "model", "host"}
    assert {"matches", "model", "hosts", "seconds"} <= set(rerank.output_schema["required"])
    speech = tools["gpu_transcribe"]
    assert not speech.input_schema.get("required"), "the audio is path or audio_base64, neither alone required"
    assert {"path", "audio_base64", "filename", "language", "prompt", "translate", "word_timestamps", "model",
            "host"} == set(speech.input_schema["properties"])
    assert {"text", "language", "duration", "segments", "hosts", "parts"} <= set(speech.output_schema["required"])
    assert speech.annotations is not None and speech.annotations.read_only_hint


@pytest.mark.anyio
async def test_every_tool_against_a_real_service(service: ServiceProcess) -> None:
    async with bridge_client({"hosts": [{"name": "box", "url": service.url}]}) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        calls = {
            "gpu_health": {},
            "gpu_info": {},
            "gpu_status": {},
            "gpu_embed": {"texts": ["A man is eating food.", "A man eats bread.", "Stocks fell today."]},
            "gpu_bertscore": {"candidates": ["the cat sat"], "references": ["a cat was sitting"], "model": "all-MiniLM-L6-v2"},
            "gpu_similarity": {"texts": ["kittens playing", "quarterly earnings report"], "query": "cute cats"},
        }
        results = {}
        for name, args in calls.items():
            result = await c.call_tool(name, args)
            assert not result.is_error, text(result)
            jsonschema.validate(result.structured_content, tools[name].output_schema)
            results[name] = result
    assert results["gpu_health"].structured_content["healthy"] == 1
    assert "1/1 GPU hosts healthy" in text(results["gpu_health"])
    info = results["gpu_info"].structured_content["hosts"][0]["info"]
    assert info["device"] == "cpu"
    status = results["gpu_status"].structured_content
    assert status["strategy"] == "least-busy" and status["hosts"][0]["state"] == "healthy"
    assert "queue_depth" in status["hosts"][0]["service"]
    assert status["hosts"][0]["service"]["queued_by_class"] == {"interactive": 0, "batch": 0}
    assert set(status["sharing"]["classes"]) == {"interactive", "batch"}, status["sharing"]
    assert status["sharing"]["classes"]["batch"]["waiting"] == 0
    assert "fair share at the bridge" in text(results["gpu_status"])
    emb = results["gpu_embed"].structured_content
    assert emb["count"] == 3 and emb["dimensions"] == 384 and emb["hosts"] == ["box"]
    assert len(text(results["gpu_embed"])) < 400, "vectors go to structured content, not the text"
    score = results["gpu_bertscore"].structured_content
    assert 0.5 < score["f1"][0] <= 1 and score["hash"].startswith("all-MiniLM-L6-v2_L6")
    sim = results["gpu_similarity"].structured_content
    assert sim["matches"][0]["index"] == 0 and sim["matches"][0]["score"] > sim["matches"][1]["score"]


@pytest.mark.anyio
async def test_similarity_modes(service: ServiceProcess) -> None:
    async with bridge_client({"hosts": [{"url": service.url}]}) as c:
        pairs = await c.call_tool("gpu_similarity", {
            "mode": "pairs", "texts": ["a dog runs", "the sun is hot"], "texts_b": ["a dog is running", "taxes are due"]})
        assert not pairs.is_error
        s = pairs.structured_content["scores"]
        assert s[0] > 0.7 and s[1] < 0.4
        matrix = await c.call_tool("gpu_similarity", {"mode": "matrix", "texts": ["a", "b", "a"]})
        m = matrix.structured_content["matrix"]
        assert len(m) == 3 and abs(m[0][0] - 1) < 1e-5 and abs(m[0][2] - 1) < 1e-5
        bad = await c.call_tool("gpu_similarity", {"mode": "pairs", "texts": ["a"]})
        assert bad.is_error and "texts_b" in text(bad)


@pytest.mark.anyio
async def test_similarity_mode_follows_from_the_arguments(service: ServiceProcess) -> None:
    """query given: query; texts_b given: pairs; texts alone: the matrix (up to its limit)."""
    texts = ["a cat sleeps", "a kitten naps", "tax forms"]
    async with bridge_client({"hosts": [{"url": service.url}]}) as c:
        alone = await c.call_tool("gpu_similarity", {"texts": texts})
        ranked = await c.call_tool("gpu_similarity", {"texts": texts, "query": "a sleeping cat"})
        paired = await c.call_tool("gpu_similarity", {"texts": texts[:2], "texts_b": texts[1:]})
        too_many = await c.call_tool("gpu_similarity", {"texts": [f"text {i}" for i in range(65)]})
        overridden = await c.call_tool("gpu_similarity", {"texts": texts, "mode": "query"})
        both = await c.call_tool("gpu_similarity", {"texts": texts, "query": "q", "texts_b": texts})
    assert not alone.is_error, text(alone)
    matrix = alone.structured_content["matrix"]
    assert alone.structured_content["mode"] == "matrix" and len(matrix) == 3 and matrix[0][1] > matrix[0][2]
    assert ranked.structured_content["mode"] == "query" and ranked.structured_content["matches"][0]["index"] == 0
    assert paired.structured_content["mode"] == "pairs" and len(paired.structured_content["scores"]) == 2
    assert too_many.is_error and "at most 64 texts (got 65)" in text(too_many) and "pass a `query`" in text(too_many)
    assert overridden.is_error and "mode=query needs a non-empty `query`" in text(overridden)
    assert both.is_error and "not both" in text(both)


@pytest.mark.anyio
async def test_tool_errors_say_what_to_do(service: ServiceProcess, keyed_service: ServiceProcess) -> None:
    async with bridge_client({"hosts": [{"name": "open", "url": service.url}]}) as c:
        r = await c.call_tool("gpu_embed", {"texts": ["x"], "model": "org/not-allowed"})
        assert r.is_error and "not in the default allowlist" in text(r) and "gpu_info" in text(r)
        r = await c.call_tool("gpu_embed", {"texts": []})
        assert r.is_error and "texts" in text(r)
        r = await c.call_tool("gpu_bertscore", {"candidates": ["a", "b"], "references": ["a"]})
        assert r.is_error and "one reference per candidate" in text(r)
        r = await c.call_tool("gpu_embed", {"texts": ["x"], "host": "nope"})
        assert r.is_error and "no host named 'nope'" in text(r)
    async with bridge_client({"hosts": [{"name": "locked", "url": keyed_service.url, "apiKey": "wrong-key-42"}]}) as c:
        r = await c.call_tool("gpu_embed", {"texts": ["x"]})
        assert r.is_error and "HTTP 401" in text(r) and "apiKey" in text(r) and "locked" in text(r)
        assert "wrong-key-42" not in text(r)
    async with bridge_client({"hosts": [{"name": "locked", "url": keyed_service.url, "apiKey": KEY}]}) as c:
        r = await c.call_tool("gpu_embed", {"texts": ["x"]})
        assert not r.is_error
        status = await c.call_tool("gpu_status", {})
        assert KEY not in json.dumps(status.structured_content) and KEY not in text(status)
    async with bridge_client({"hosts": [{"name": "dead", "url": f"http://127.0.0.1:{free_port()}"}], "timeout": 3}) as c:
        started = time.monotonic()
        r = await c.call_tool("gpu_embed", {"texts": ["x"]})
        assert r.is_error and "dead" in text(r) and "gpu_status" in text(r)
        assert time.monotonic() - started < 5


PYTHON_LEAKS = ("ValidationError", "pydantic", "validation error for", "type=", "input_value", "Traceback")


def assert_plain(message: str) -> None:
    """What an agent reads carries no exception class name and no pydantic dump."""
    for leak in PYTHON_LEAKS:
        assert leak not in message, f"{leak!r} leaked into: {message}"


@pytest.mark.anyio
async def test_bad_arguments_are_refused_at_the_edge_naming_argument_and_index(service: ServiceProcess) -> None:
    """Checked once, before any shard leaves the bridge, by the service's own validators: the tool
    error and the service's 422 say the same words."""
    blank = ["fine", "   ", "also fine"]
    async with bridge_client({"hosts": [{"name": "box", "url": service.url}], "shardSize": 1}) as c:
        embed = await c.call_tool("gpu_embed", {"texts": blank})
        score = await c.call_tool("gpu_bertscore", {"candidates": ["a", "b"], "references": ["a", "\n\t"]})
        pairs = await c.call_tool("gpu_similarity", {"texts": ["a", "b"], "texts_b": ["c", ""]})
        sdk_checked = await c.call_tool("gpu_embed", {"texts": []})  # refused by the MCP SDK's own check
        sent = (await c.call_tool("gpu_status", {})).structured_content["hosts"][0]["served"]
    for result in (embed, score, pairs, sdk_checked):
        assert result.is_error
        assert_plain(text(result))
    assert "invalid arguments: texts[1] is blank" in text(embed) and "texts[0]" not in text(embed)
    assert "references[1] is blank" in text(score)
    assert "texts_b[1] is blank" in text(pairs)
    assert "invalid arguments: texts: List should have at least 1 item" in text(sdk_checked)
    assert sent == 0, "nothing was sent to a host"

    http = httpx.post(f"{service.url}/embed", json={"texts": blank})
    assert http.status_code == 422
    detail = http.json()["detail"]
    assert_plain(detail)
    assert detail.removeprefix("invalid request: ") == text(embed).split("invalid arguments: ")[1]


@pytest.mark.anyio
async def test_a_bridge_bug_is_logged_and_reported_without_internals(
    service: ServiceProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async with Bridge(parse_config({"hosts": [{"url": service.url}]}, "test"), allow_embedded=False) as bridge:

        async def broken(*args: Any, **kwargs: Any) -> None:
            # A bug cannot be made to happen in a correct bridge, so one is put in its place.
            raise RuntimeError("bug-detail-42")

        bridge.gpu.embed_request = broken  # type: ignore[method-assign]
        async with Client(build_server(bridge)) as c:
            r = await c.call_tool("gpu_embed", {"texts": ["x"]})
    assert r.is_error and text(r).endswith("internal error in the bridge; see its log")
    assert "RuntimeError" not in text(r) and "bug-detail-42" not in text(r)
    assert any(rec.exc_info and "bug-detail-42" in str(rec.exc_info[1]) for rec in caplog.records), "traceback logged"


@pytest.mark.anyio
async def test_progress_notifications_arrive_in_order(service: ServiceProcess) -> None:
    updates: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total))

    async with bridge_client({"hosts": [{"url": service.url}], "shardSize": 10}) as c:
        r = await c.call_tool("gpu_embed", {"texts": [f"text {i}" for i in range(50)]}, progress_callback=on_progress)
    assert not r.is_error and r.structured_content["count"] == 50
    assert [p for p, _ in updates] == [1, 2, 3, 4, 5] and all(t == 5 for _, t in updates)


@pytest.mark.anyio
async def test_no_hosts_and_no_service_is_a_clear_error_at_call_time() -> None:
    """The server still starts and lists its tools; every call says how to configure hosts."""
    async with bridge_client({}) as c:
        assert {t.name for t in (await c.list_tools()).tools} == TOOLS
        for name, args in [("gpu_health", {}), ("gpu_embed", {"texts": ["x"]})]:
            r = await c.call_tool(name, args)
            assert r.is_error and "no GPU hosts are configured" in text(r) and "GPU_BRIDGE_URLS" in text(r)


@pytest.mark.anyio
async def test_results_keep_input_order_across_shards_and_hosts(service: ServiceProcess, keyed_service: ServiceProcess) -> None:
    texts = [f"item {i}: " + ("alpha " if i % 3 else "omega ") * (1 + i % 7) for i in range(300)]
    config = {"hosts": [{"name": "a", "url": service.url}, {"name": "b", "url": keyed_service.url, "apiKey": KEY}],
              "shardSize": 16, "loadBalancing": "round-robin"}
    async with bridge_client(config) as c:
        r = await c.call_tool("gpu_embed", {"texts": texts})
        single = await c.call_tool("gpu_embed", {"texts": texts[:40], "host": "a"})
    assert not r.is_error and not single.is_error, (r.content, single.content)
    assert sorted(r.structured_content["hosts"]) == ["a", "b"]
    vectors = r.structured_content["embeddings"]
    assert len(vectors) == 300
    for i, v in enumerate(single.structured_content["embeddings"]):
        assert max(abs(x - y) for x, y in zip(v, vectors[i], strict=True)) < 1e-5, f"vector {i} is not its text's"


# --------------------------------------------------------------------------- other transports


@pytest.mark.anyio
async def test_stdio_subprocess(service: ServiceProcess) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_bridge", "--url", service.url],
                                   env=bridge_env(), cwd=str(ROOT))
    async with Client(params) as c:
        assert {t.name for t in (await c.list_tools()).tools} == TOOLS
        r = await c.call_tool("gpu_embed", {"texts": ["over stdio"]})
        assert not r.is_error and r.structured_content["dimensions"] == 384
        h = await c.call_tool("gpu_health", {})
        assert h.structured_content["healthy"] == 1


def test_stdio_stdout_carries_only_protocol(service: ServiceProcess) -> None:
    """Every line on stdout must be JSON-RPC: a stray print would break the client."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "gpu_health", "arguments": {}}},
    ]
    proc = subprocess.Popen([sys.executable, "-m", "mcp_bridge", "--url", service.url, "--log-level", "debug"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bridge_env())
    try:
        assert proc.stdin and proc.stdout
        lines = []
        for msg in messages:
            proc.stdin.write((json.dumps(msg) + "\n").encode())
            proc.stdin.flush()
            if "id" in msg:
                lines.append(proc.stdout.readline())
        proc.stdin.close()
        lines += proc.stdout.read().splitlines()
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert lines, stderr
    for line in lines:
        if line.strip():
            assert json.loads(line)["jsonrpc"] == "2.0"
    assert "configuration from" in stderr, "logs go to stderr"


@pytest.mark.anyio
async def test_streamable_http_with_bearer_token(service: ServiceProcess) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    token = "bridge-token-xyz"
    with bridge_mcp_url(service.url, token=token) as url:
        assert httpx.post(url, json={}).status_code == 401
        assert httpx.post(url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http)) as c:
                assert {t.name for t in (await c.list_tools()).tools} == TOOLS
                r = await c.call_tool("gpu_embed", {"texts": ["over http"]})
                assert not r.is_error and r.structured_content["count"] == 1


@pytest.mark.anyio
async def test_sse_transport(service: ServiceProcess) -> None:
    from mcp.client.sse import sse_client

    with bridge_mcp_url(service.url, transport="sse") as url:
        async with Client(sse_client(url)) as c:
            r = await c.call_tool("gpu_embed", {"texts": ["over sse"]})
            assert not r.is_error and r.structured_content["dimensions"] == 384


@pytest.mark.anyio
async def test_client_cancellation_stops_work_on_the_host(small_batch_service: ServiceProcess) -> None:
    import anyio

    svc = small_batch_service
    texts = [f"a long text to keep the host busy, number {i}, " * 6 for i in range(2000)]
    before = batches_run(svc.url)

    def batches() -> float:
        return batches_run(svc.url) - before

    async with bridge_client({"hosts": [{"url": svc.url}], "shardSize": 5000}) as c:
        with anyio.move_on_after(1.5):
            await c.call_tool("gpu_embed", {"texts": texts})
            pytest.fail("the call should still be running")
        await wait_until_async(lambda: httpx.get(f"{svc.url}/status").json()["active_jobs"] == [], timeout=5,
                               interval=0.1, message="the host should drop the cancelled job")
        # The batch already on the device finishes; nothing after it starts. How long that batch
        # takes depends on the machine's load, so wait for the count to settle (3 s without a new
        # batch; an uncancelled job adds one every ~0.1 s) rather than for a fixed time.
        await wait_until_async(unchanged_for(batches, quiet=3.0), timeout=60, interval=0.25,
                               message="batches kept running after the call was cancelled")
        assert batches() < 2000 / 16, "the job did not run to completion"
        r = await c.call_tool("gpu_embed", {"texts": ["still serving"]})
        assert not r.is_error


@pytest.mark.anyio
async def test_embed_base64_encoding_is_exact(service: ServiceProcess) -> None:
    from gpu_protocol.codec import decode_float32_rows

    async with bridge_client({"hosts": [{"url": service.url}]}) as c:
        floats = (await c.call_tool("gpu_embed", {"texts": ["one", "two"]})).structured_content
        packed = (await c.call_tool("gpu_embed", {"texts": ["one", "two"], "encoding": "base64"})).structured_content
    assert packed["embeddings"] is None and floats["embeddings_base64"] is None
    # Exact on purpose: the same two texts, alone on the host, run as the same one batch (the same
    # computation), so any difference would be the encoding's.
    assert decode_float32_rows(packed["embeddings_base64"], 2, 384) == floats["embeddings"]


@pytest.mark.anyio
async def test_large_results_stay_under_the_result_budget(service: ServiceProcess) -> None:
    """auto gives numbers while they fit limits.maxResultMB and base64 past it; an explicit
    encoding that cannot fit is a tool error that says how many texts would."""
    texts = [f"budget text {i}" for i in range(24)]
    # 24 x 384 floats print as ~190 KB of JSON, base64 as ~49 KB: a 0.1 MiB budget sits between.
    async with bridge_client({"hosts": [{"url": service.url}], "limits": {"maxResultMB": 0.1}}) as c:
        small = await c.call_tool("gpu_embed", {"texts": texts[:4]})
        auto = await c.call_tool("gpu_embed", {"texts": texts})
        forced = await c.call_tool("gpu_embed", {"texts": texts, "encoding": "float"})
        huge = await c.call_tool("gpu_embed", {"texts": texts * 3, "encoding": "base64"})
    assert small.structured_content["encoding"] == "float" and len(small.structured_content["embeddings"]) == 4
    assert auto.structured_content["encoding"] == "base64" and auto.structured_content["embeddings"] is None
    assert "embeddings_base64" in text(auto) and not auto.is_error
    assert forced.is_error and "maxResultMB" in text(forced) and "encoding=auto or base64" in text(forced)
    fits = int(text(forced).split("send at most ")[1].split()[0])
    assert 8 <= fits < 24, text(forced)
    assert huge.is_error and "0.1 MiB" in text(huge)
