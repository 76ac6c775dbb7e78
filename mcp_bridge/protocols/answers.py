"""Reading a host's HTTP answer: its JSON, its error detail, and failures in plain words.

What these return can reach an agent (in a tool error or `gpu_status`), so it never
carries an exception class name or a pydantic dump.

`BadResponse` is the one exception that says "this host answered garbage": the pool holds
it against the host and tries another. A protocol's parse code turns every way an answer
can be wrong (not JSON, not the schema, vectors of the wrong shape) into it, with
`read_model` and `host_answer`; any other exception is a bug in the bridge and is never
held against a host.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from gpu_protocol.codec import VectorsInvalid
from gpu_protocol.rerank import RerankRequest, RerankResponse
from gpu_protocol.validation import validation_message

ModelT = TypeVar("ModelT", bound=BaseModel)


class BadResponse(Exception):
    """The host answered, but not with what the schema promises."""


def error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None and isinstance(body, dict):
        error = body.get("error")  # OpenAI: {"error": {"message": ...}}; TEI: {"error": "...", "error_type": ...}
        detail = error.get("message") if isinstance(error, dict) else error
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail if detail is not None else body)[:500]


def describe_transport_error(exc: httpx.HTTPError) -> str:
    """An HTTP client failure in plain words (never the exception's class name), with its own message."""
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        what = "could not connect"
    elif isinstance(exc, httpx.RemoteProtocolError):
        what = "the connection closed before a complete answer"
    elif isinstance(exc, httpx.ReadError | httpx.WriteError):
        what = "the connection broke during the request"
    else:
        what = "the request failed"
    detail = str(exc).strip()[:200]
    return f"{what} ({detail})" if detail else what


def describe_malformed(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # the answer does not fit the wire schema
        return validation_message(exc.errors())[:200]
    return str(exc)[:200] or "unexpected shape"


def parse_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadResponse(f"not JSON ({exc})") from None


def read_model(response: httpx.Response, model: type[ModelT]) -> ModelT:
    """The answer as `model`, or BadResponse saying what does not fit. Parsed by pydantic straight
    from the bytes (no Python dict in between: a 2,000-vector answer is one long string)."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            raise BadResponse(f"not JSON ({errors[0]['msg']})") from None
        raise BadResponse(describe_malformed(exc)) from None


@contextmanager
def host_answer() -> Iterator[None]:
    """Around code that reads a host's answer: a schema or vector-shape failure becomes BadResponse."""
    try:
        yield
    except (ValidationError, VectorsInvalid) as exc:
        raise BadResponse(describe_malformed(exc)) from None


def check_rerank(answer: RerankResponse, request: RerankRequest) -> RerankResponse:
    """One result per document sent, each index once, every score a finite number."""
    count = len(request.documents)
    indices = sorted(r.index for r in answer.results)
    if indices != list(range(count)):
        raise BadResponse(f"{len(answer.results)} rerank results for {count} documents, or indices out of range")
    if not all(math.isfinite(r.relevance_score) for r in answer.results):
        raise BadResponse("a non-finite relevance score")
    return answer
