"""The protocol version tables (gpu_protocol/versions.py) and how the bridge fits requests to a host's version.

Fast and without processes; tests/bridge/test_compat.py runs real releases against each other."""

from __future__ import annotations

import inspect
import json
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import BaseModel

from gpu_protocol import bertscore, embed, rerank, routes, similarity, status
from gpu_protocol.codec import encode_block
from gpu_protocol.versions import (
    OLDEST_VERSION,
    PROTOCOL_VERSION,
    REQUEST_FIELDS,
    REQUEST_MODELS,
    FieldUnsupported,
    caller_version,
    fit_request,
    shape_answer,
)
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols.gpu_service import GpuServiceProtocol

WIRE_MODULES = (bertscore, embed, rerank, similarity, status)


def wire_models() -> list[type[BaseModel]]:
    return [cls for module in WIRE_MODULES for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseModel) and cls.__module__ == module.__name__]


def test_requests_are_read_strictly_and_answers_tolerantly() -> None:
    for model in wire_models():
        extra = model.model_config.get("extra")
        if model in REQUEST_MODELS.values() or model.__name__ in ("RerankDocument", "IdfCounts",
                                                                  "BertScoreModelChoice"):
            assert extra == "forbid", model
        else:
            assert extra != "forbid", f"{model.__name__} is an answer: a later release may add to it"


def test_a_release_only_adds_request_fields() -> None:
    assert set(REQUEST_FIELDS[PROTOCOL_VERSION]) == set(REQUEST_MODELS)
    for version, table in REQUEST_FIELDS.items():
        for path, fields in table.items():
            assert fields <= REQUEST_FIELDS[PROTOCOL_VERSION][path], (version, path, fields)


def test_the_caller_version_from_its_header() -> None:
    assert caller_version(None) == OLDEST_VERSION == 1  # 0.3.0 states none
    assert caller_version("not a number") == 1 and caller_version("0") == 1
    assert caller_version(str(PROTOCOL_VERSION + 5)) == PROTOCOL_VERSION


def test_an_old_caller_gets_its_versions_shape() -> None:
    body = {"device": "cpu", "protocol_version": 2, "capabilities": {}}
    assert shape_answer(routes.INFO, body, 1) == {"device": "cpu"}
    assert shape_answer(routes.INFO, body, PROTOCOL_VERSION) == body
    assert shape_answer(routes.EMBED, {"model": "m"}, 1) == {"model": "m"}


def test_a_field_the_host_lacks_is_left_out_at_its_default_and_refused_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(REQUEST_FIELDS[1], routes.EMBED, REQUEST_FIELDS[1][routes.EMBED] - {"input_type"})
    assert fit_request(routes.EMBED, {"texts": ["a"], "input_type": None}, 1) == {"texts": ["a"]}
    with pytest.raises(FieldUnsupported, match=r"protocol 1 \(0.3.0\), which has no `input_type`"):
        fit_request(routes.EMBED, {"texts": ["a"], "input_type": "query"}, 1)
    assert fit_request(routes.EMBED, {"texts": ["a"], "input_type": "query"}, 2)["input_type"] == "query"


@pytest.mark.anyio
async def test_a_call_that_needs_a_newer_field_goes_to_a_host_that_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REQUEST_FIELDS[1], routes.EMBED, REQUEST_FIELDS[1][routes.EMBED] - {"input_type"})
    seen: list[tuple[str, dict[str, Any]]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.host, body))
        assert request.headers[routes.PROTOCOL_HEADER] == str(PROTOCOL_VERSION), "the bridge states its version"
        rows = np.ones((len(body["texts"]), 3), dtype=np.float32)
        answer = {"model": "m", "dimensions": 3, "count": len(rows), "truncated": 0,
                  "embeddings_base64": encode_block(rows)}
        return httpx.Response(200, json=answer, headers={routes.PROTOCOL_HEADER: "2"} if "new" in request.url.host else {})

    cfg = parse_config({"hosts": [{"name": "old", "url": "http://old.test"}, {"name": "new", "url": "http://new.test"}],
                        "loadBalancing": "round-robin"}, "test")
    gpu = GpuClient(cfg, HostPool(cfg, transport=httpx.MockTransport(handle)))
    gpu.pool.host("old").described.version = 1
    gpu.pool.host("new").described.version = 2
    plain = GpuServiceProtocol.embed_call
    monkeypatch.setattr(GpuServiceProtocol, "embed_call", lambda self, request: type(plain(self, request))(
        "POST", routes.EMBED, {**plain(self, request).json, "input_type": "query"}))
    for _ in range(4):
        result = await gpu.embed(["a", "b"], host=None)
        assert result.hosts == ["new"]
    assert {host for host, _ in seen} == {"new.test"}, "never sent to the host whose version lacks the field"
    assert gpu.pool.host("old").record.failed == 0, "not held against it"
    await gpu.pool.close()
