"""A stand-in for the next release of the service, which does not exist yet: a proxy in front of a
real service that adds fields to every JSON answer and states a later protocol version, as any
release that only adds would. Served like `FakeHost` (uvicorn on loopback, in a thread).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION
from tests.support.fake_host import FakeHost

ADDED = "added_in_next_release"
NEXT_VERSION = PROTOCOL_VERSION + 1
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "date", "server"}


def with_added_fields(body: Any) -> Any:
    """The answer with an unknown field on the object and on each object of its top-level lists (results,
    data, models); a mapping of values (idf counts, capabilities) is left as it is."""
    if isinstance(body, list):
        return [with_added_fields(item) if isinstance(item, dict) else item for item in body]
    if not isinstance(body, dict):
        return body
    added = {k: [{**x, ADDED: 1} if isinstance(x, dict) else x for x in v] if isinstance(v, list) else v
             for k, v in body.items()}
    return {**added, ADDED: {"feature": "unknown to this reader"}}


def next_release(upstream: str) -> FakeHost:
    """A proxy to `upstream` that plays the next release (its answers carry fields no reader knows yet)."""
    client = httpx.AsyncClient(base_url=upstream, timeout=120)

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = await client.request(request.method, request.url.path, content=await request.body(),
                                      headers=headers, params=request.query_params)
        content = answer.content
        if answer.headers.get("content-type", "").startswith("application/json") and answer.status_code < 400:
            content = json.dumps(with_added_fields(answer.json())).encode()
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        kept[PROTOCOL_HEADER.lower()] = str(NEXT_VERSION)
        return Response(content, status_code=answer.status_code, headers=kept)

    methods = ["GET", "POST"]
    return FakeHost([Route("/{path:path}", forward, methods=methods)])
