"""The one validation path of a `/v1` request: the body read within its size cap and parsed as JSON,
validated by the request's own model (errors name the field as the caller wrote it, `documents[2]`),
then held to the bridge's limits (the same check for every route). What comes out is the wire request
the pool sends: the shards are copies of it, never validated again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gpu_protocol.embed import EmbedRequest, OpenAIEmbeddingRequest
from gpu_protocol.rerank import RerankRequest, RerankV2Request
from gpu_protocol.validation import TextsRejected, error_location, validation_message
from mcp_bridge.config import LimitsConfig
from mcp_bridge.http_api.errors import ApiError

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body; more is refused with 413 before it is read whole."""
EMBED_EXAMPLE = '{"input": ["text"], "model": "..."}'
RERANK_EXAMPLE = '{"query": "...", "documents": ["text"]}'


async def read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB; split the request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB; split the request")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, example: str) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that shows what to send."""
    try:
        body = json.loads(await read_body(request))
    except ValueError:
        raise ApiError(400, f"the body is not valid JSON; send {example}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object such as {example}")
    return body


def validated(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """`body` as `model`, or a 422 naming the bad fields as the caller wrote them (`documents[2]`), in the
    words the MCP tools and a host use (`validation_message`); `param` is the first one's top-level field."""
    try:
        return model.model_validate(body)
    except ValidationError as err:
        errors = err.errors()
        loc = errors[0]["loc"]
        raise ApiError(422, validation_message(errors), param=error_location(loc[:1]) if loc else None) from None


def within_limits(limits: LimitsConfig, **fields: Sequence[str] | str) -> None:
    """Each field's texts within the bridge's limits and non-blank (`LimitsConfig.check`, the same check
    as the MCP tools'): 413 for too many texts, 422 for a blank or too long one; `param` the field."""
    try:
        for field, texts in fields.items():
            limits.check(field, texts)
    except TextsRejected as exc:
        raise ApiError(exc.status, exc.message, param=exc.field.split("[")[0]) from None


def _input_texts(raw: Any) -> list[str]:
    """OpenAI's `input`: one text or a list of texts (token arrays are OpenAI's, not ours)."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise ApiError(422, "input must be a string or a list of strings", param="input")
    if not raw:
        raise ApiError(422, "input is an empty list; send at least one text", param="input")
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            kind = "token arrays are not supported, " if isinstance(item, int | list) else ""
            raise ApiError(422, f"input[{i}] is not a string: {kind}send text", param="input")
    return raw


def embedding_request(body: dict[str, Any], limits: LimitsConfig) -> tuple[OpenAIEmbeddingRequest, EmbedRequest]:
    """OpenAI's embeddings request and the wire request made from it, or an ApiError naming the field."""
    texts = _input_texts(body.get("input"))
    asked = validated(OpenAIEmbeddingRequest, body)
    within_limits(limits, input=texts)
    wire = validated(EmbedRequest, {"texts": texts, "model": asked.model, "normalize": True, "dimensions": asked.dimensions,
                                    "input_type": asked.input_type})
    return asked, wire


def rerank_request(body: dict[str, Any], limits: LimitsConfig) -> RerankRequest:
    """Cohere's rerank request within the bridge's limits, or an ApiError naming the field (and index)."""
    request = validated(RerankRequest, body)
    within_limits(limits, query=request.query, documents=request.texts())
    return request


def rerank_v2_request(body: dict[str, Any], limits: LimitsConfig) -> RerankV2Request:
    """Cohere's v2 rerank request within the bridge's limits, or an ApiError naming the field (and index)."""
    request = validated(RerankV2Request, body)
    within_limits(limits, query=request.query, documents=request.documents)
    return request
