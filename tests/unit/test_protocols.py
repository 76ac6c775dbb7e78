"""Host types behind one interface: each `HostProtocol` builds its requests, parses and checks its answers
and judges its health; the pool, the health loop and the tools work the same whatever the type.

The hosts here are `httpx.MockTransport` functions: a text-embeddings-inference server (a Rust
binary or a container) and an OpenAI-compatible server cannot run on this machine, so they are
replayed from their documented request and answer shapes. Our own service runs for real in
the other test files (test_bridge_mcp, test_multihost); here it is mocked only to feed it
answers a real one never gives (garbage, a bridge bug).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from gpu_protocol import routes
from gpu_protocol.bertscore import BertScoreRequest
from gpu_protocol.codec import VectorsInvalid, as_block, check_block, decode_float32_block, encode_block
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.similarity import SimilarityRequest
from mcp_bridge import protocols
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.pool.errors import NoHostAvailable
from mcp_bridge.pool.health import HealthMonitor
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from mcp_bridge.protocols.embeddings_only import EmbeddingsOnly
from mcp_bridge.protocols.vectors import VectorBlock, join, similarity_from_block

Handler = Callable[[httpx.Request], httpx.Response]
ROWS = np.array([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])


def client(hosts: list[dict[str, Any]], handler: Handler, **config: Any) -> GpuClient:
    cfg = parse_config({"hosts": hosts, **config}, "test")
    return GpuClient(cfg, HostPool(cfg, transport=httpx.MockTransport(handler)))


def vector_for(text: str) -> list[float]:
    """A fake model: the text's length, its vowels, and 1."""
    return [float(len(text)), float(sum(c in "aeiou" for c in text)), 1.0]


# --------------------------------------------------------------------------- TEI's native API


def tei_host(seen: list[httpx.Request]) -> Handler:
    """text-embeddings-inference: POST /embed {"inputs", "normalize"} -> [[...], ...]; GET /health -> 200."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/health":
            return httpx.Response(200)
        if request.url.path == "/embed" and request.method == "POST":
            body = json.loads(request.content)
            rows = [vector_for(t) for t in body["inputs"]]
            if body.get("normalize", True):
                rows = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows]
            return httpx.Response(200, json=rows)
        return httpx.Response(404, json={"error": "not found", "error_type": "Unknown"})

    return handle


@pytest.mark.anyio
async def test_tei_hosts_speak_teis_native_embed_and_health() -> None:
    seen: list[httpx.Request] = []
    gpu = client([{"name": "tei", "url": "http://tei.test", "type": "tei", "model": "bge-small", "apiKey": "k"}],
                 tei_host(seen))
    raw = await gpu.embed(["ab", "hello"], normalize=False)
    assert raw.embeddings == [vector_for("ab"), vector_for("hello")] and raw.model == "bge-small"
    unit = await gpu.embed(["hello"], dimensions=2)  # truncated here, then renormalised, as our service does
    assert abs(unit.embeddings[0][0] - 5 / math.sqrt(29)) < 1e-12 and unit.dimensions == 2
    embeds = [r for r in seen if r.url.path == "/embed"]
    assert json.loads(embeds[0].content) == {"inputs": ["ab", "hello"], "normalize": False}
    assert embeds[0].headers["authorization"] == "Bearer k", "tei hosts take their key as a bearer token"
    assert (await gpu.health())[0].ok and seen[-1].url.path == "/health"
    sim = await gpu.similarity(SimilarityRequest(texts=["ab", "hello"], query="hello"))
    assert sim.response.matches is not None and sim.response.matches[0].index == 1
    assert abs(sim.response.matches[0].score - 1.0) < 1e-9, "the query's own text scores 1"
    with pytest.raises(NoHostAvailable, match=r"tei hosts serve embeddings only"):
        await gpu.bertscore(BertScoreRequest(candidates=["a"], references=["b"]))
    await gpu.pool.close()


@pytest.mark.anyio
async def test_tei_error_answers_name_teis_reason() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413, json={"error": "batch size 5000 > maximum allowed batch size 512",
                                         "error_type": "Validation"})

    gpu = client([{"name": "tei", "url": "http://tei.test", "type": "tei"}], refuse)
    with pytest.raises(Exception, match="batch size 5000 > maximum allowed batch size 512") as err:
        await gpu.embed(["x"])
    assert "error_type" not in str(err.value)
    await gpu.pool.close()


# --------------------------------------------------------------------------- OpenAI-compatible


@pytest.mark.anyio
async def test_openai_answers_with_extra_fields_and_any_order_are_read() -> None:
    def vllm(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        data = [{"object": "embedding", "index": i, "embedding": vector_for(t)} for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"id": "embd-1", "object": "list", "created": 1, "model": body["model"],
                                         "data": data[::-1], "usage": {"prompt_tokens": 2, "total_tokens": 2}})

    gpu = client([{"name": "vllm", "url": "http://vllm.test", "type": "openai", "model": "e5"}], vllm)
    result = await gpu.embed(["a", "bbbb"], normalize=False)
    assert result.embeddings == [vector_for("a"), vector_for("bbbb")] and result.model == "e5"
    await gpu.pool.close()


# --------------------------------------------------------------------------- our service: garbage and bugs


def our_host(answer: Callable[[dict[str, Any]], httpx.Response]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/embed":
            return answer(json.loads(request.content))
        return httpx.Response(200, json={"status": "ok", "device": "cpu"})

    return handle


def base64_answer(rows: np.ndarray, **overrides: Any) -> httpx.Response:
    count, dims = rows.shape
    body = {"model": "m", "dimensions": dims, "count": count, "truncated": 0, "embeddings_base64": encode_block(rows)}
    return httpx.Response(200, json={**body, **overrides})


@pytest.mark.anyio
@pytest.mark.parametrize("garbage, words", [
    ({"embeddings_base64": "not base64!"}, "not valid base64"),
    ({"dimensions": 4}, "expected 2 x 4 x 4"),
    ({"count": 3}, "expected 3 x 3 x 4"),
    ({"embeddings_base64": None}, "neither embeddings nor embeddings_base64"),
    ({"truncated": "many"}, "truncated: Input should be a valid integer"),
])
async def test_garbage_from_our_service_is_held_against_the_host(garbage: dict[str, Any], words: str) -> None:
    liar = our_host(lambda body: base64_answer(ROWS[:2], **garbage))
    honest = our_host(lambda body: base64_answer(ROWS[: len(body["texts"])]))
    gpu = client([{"name": "liar", "url": "http://liar.test"}, {"name": "honest", "url": "http://honest.test"}],
                 lambda r: (liar if r.url.host.startswith("liar") else honest)(r), loadBalancing="round-robin")
    for _ in range(2):
        result = await gpu.embed(["a", "b"], host=None)
        assert result.hosts == ["honest"] and result.embeddings == ROWS[:2].tolist()
    liar_host = gpu.pool.host("liar")
    assert liar_host.record.failed >= 1 and words in (liar_host.record.last_error or ""), liar_host.record.last_error
    await gpu.pool.close()


@pytest.mark.anyio
async def test_a_bug_in_the_bridges_parse_code_is_a_bridge_error_never_a_host_ejection() -> None:
    """Before: a KeyError or TypeError raised by the bridge's own parse code counted as a malformed
    answer, so a bridge bug failed and ejected every healthy host in turn."""
    cfg = parse_config({"hosts": [{"name": "a", "url": "http://a.test"}, {"name": "b", "url": "http://b.test"}],
                        "failureThreshold": 1}, "test")
    pool = HostPool(cfg, transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"fine": True})))

    def buggy(host: object, response: httpx.Response) -> object:
        return response.json()["missing"]  # a bug: the bridge reads a field nobody sends

    for bug in (buggy, lambda h, r: len(None)):  # type: ignore[arg-type]
        with pytest.raises((KeyError, TypeError)):
            await pool.request("embed", lambda h: HttpCall("POST", "/embed", {}), bug, deadline=pool.clock() + 5)
    assert all(h.record.failed == 0 and h.state(pool.clock()) == "healthy" for h in pool.hosts)
    await pool.close()


@pytest.mark.anyio
async def test_a_health_answer_that_is_not_json_is_a_down_host_not_a_crash() -> None:
    """Before: gpu_health raised out of the fan-out on a 200 whose JSON body did not parse."""
    def proxy_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy</html>", headers={"content-type": "application/json"})

    gpu = client([{"name": "behind-proxy", "url": "http://p.test"}], proxy_page)
    (row,) = await gpu.health()
    assert not row.ok and row.status == 200
    assert not await HealthMonitor(gpu.pool).probe(gpu.pool.host("behind-proxy"))
    await gpu.pool.close()


# --------------------------------------------------------------------------- a new host type is one class


class ToyProtocol(EmbeddingsOnly):
    """A made-up server: POST /vectors {"texts"} -> {"rows"}; GET /alive -> {"alive": true}."""

    type: ClassVar[str] = "toy"

    def health_call(self) -> HttpCall:
        return HttpCall("GET", "/alive")

    def _serves(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("alive") is True

    def embed_call(self, request: EmbedRequest) -> HttpCall:
        return HttpCall("POST", "/vectors", {"texts": request.texts})

    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        return self.checked_block(response.json()["rows"], request, "toy-model")


@pytest.mark.anyio
async def test_a_new_host_type_needs_one_class_and_nothing_in_the_pool_health_loop_or_tools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(protocols.HOST_TYPES, "toy", ToyProtocol)
    alive = {"toy": True}

    def toy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/alive":
            return httpx.Response(200, json={"alive": alive["toy"]})
        texts = json.loads(request.content)["texts"]
        return httpx.Response(200, json={"rows": [vector_for(t) for t in texts]})

    gpu = client([{"name": "t", "url": "http://toy.test", "type": "toy"}], toy, shardSize=2, unhealthyThreshold=1)
    result = await gpu.embed(["a", "bb", "ccc"], normalize=False)
    assert result.embeddings == [vector_for(t) for t in ("a", "bb", "ccc")] and result.hosts == ["t"]
    assert (await gpu.health())[0].ok and (await gpu.info())[0].error == "toy host: no /info"
    alive["toy"] = False
    assert not await HealthMonitor(gpu.pool).probe(gpu.pool.host("t"))
    assert (await gpu.status()).hosts[0].state == "unhealthy"
    await gpu.pool.close()


def test_every_host_type_is_in_the_manifest_schema() -> None:
    from tests.unit.test_config import SCHEMA

    enum = SCHEMA["properties"]["hosts"]["items"]["properties"]["type"]["enum"]
    assert enum == list(protocols.HOST_TYPES)
    assert {t: p.default_auth for t, p in protocols.HOST_TYPES.items()} == {
        "gpu-service": "x-api-key", "openai": "bearer", "tei": "bearer"}


def test_the_protocols_build_each_request_from_the_shared_routes() -> None:
    cfg = parse_config({"hosts": [{"url": "http://x", "type": t, "name": t} for t in protocols.HOST_TYPES]}, "t")
    ours, openai, tei = (protocols.protocol_for(h) for h in cfg.hosts)
    request = EmbedRequest(texts=["a"])
    assert ours.embed_call(request).path == routes.EMBED and ours.embed_call(request).json["encoding_format"] == "base64"
    assert openai.embed_call(request).path == routes.OPENAI_EMBEDDINGS and tei.embed_call(request).path == routes.TEI_EMBED
    assert ours.cancel_call("r1") == HttpCall("POST", "/cancel/r1") and openai.cancel_call("r1") is None
    assert [p.health_call().path for p in (ours, openai, tei)] == [routes.HEALTH, routes.OPENAI_MODELS, routes.TEI_HEALTH]
    assert ours.status_call() is not None and tei.status_call() is None and openai.info_call() is None


# --------------------------------------------------------------------------- the codec and vector blocks


def test_codec_decodes_without_copying_and_checks_in_one_pass() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    block = decode_float32_block(base64.b64encode(rows.astype("<f4").tobytes()).decode(), 4, 3)
    assert np.array_equal(block, rows) and not block.flags.writeable
    check_block(block, 4, 3)
    for bad, count, width, words in [
        (block, 5, None, "4 vectors for 5 texts"),
        (block, 4, 2, "vectors have 3 dimensions, 2 were asked for"),
        (np.array([[1.0, np.inf]], dtype=np.float32), 1, None, "non-finite number"),
        (np.zeros((2, 0), dtype=np.float32), 2, None, "vectors of different lengths"),
    ]:
        with pytest.raises(VectorsInvalid, match=words):
            check_block(bad, count, width)
    with pytest.raises(VectorsInvalid, match="different lengths"):
        as_block([[1.0, 2.0], [3.0]])
    with pytest.raises(VectorsInvalid, match="not numbers"):
        as_block([["a", "b"]])


def test_joined_blocks_and_similarity_from_a_block() -> None:
    unit = ROWS / np.linalg.norm(ROWS, axis=1, keepdims=True)
    a = VectorBlock(unit[:2], "m", truncated=1, hosts=("h1",))
    b = VectorBlock(unit[2:], "m", truncated=2, hosts=("h0",))
    joined = join([a, b])
    assert np.array_equal(joined.array, unit) and joined.truncated == 3 and joined.hosts == ("h0", "h1")
    assert len(joined) == 3 and joined.rows() == unit.tolist()
    assert base64.b64decode(joined.base64()) == unit.astype("<f4").tobytes()
    matrix = similarity_from_block(SimilarityRequest(texts=["x", "y", "z"]), joined)
    expected = [[sum(p * q for p, q in zip(u, v, strict=True)) for v in unit.tolist()] for u in unit.tolist()]
    assert np.allclose(matrix.matrix, expected, atol=1e-12)
    query = similarity_from_block(SimilarityRequest(texts=["x", "y"], query="z"), joined)
    assert query.scores is not None and np.allclose(query.scores, [expected[0][2], expected[1][2]], atol=1e-12)
