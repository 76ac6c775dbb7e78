"""The service's body-size middleware in front of a tiny ASGI app: a body over the limit is refused before the app
reads it (413 naming the limit and its variable), in OpenAI's error shape on the OpenAI audio routes."""

from __future__ import annotations

import httpx
import pytest

from gpu_protocol.auth import Receive, Scope, Send
from gpu_service.http.middleware.body_limit import BodySizeLimitMiddleware


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def client() -> httpx.AsyncClient:
    app = BodySizeLimitMiddleware(echo_length, max_bytes=100)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test")


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "openai_shaped"), [("/v1/audio/speech", True), ("/embed", False)])
async def test_a_body_over_the_limit_is_refused_before_the_app_reads_it(path: str, openai_shaped: bool) -> None:
    async with client() as http:
        assert (await http.post(path, content=b"x" * 100)).text == "100"
        refused = await http.post(path, content=b"x" * 101)
    assert refused.status_code == 413
    answer = refused.json()
    assert "limit of 100 bytes (GPU_MAX_BODY_BYTES)" in answer["detail"]
    if openai_shaped:
        assert answer["error"] == {"message": answer["detail"], "type": "invalid_request_error", "param": None,
                                   "code": None}
    else:
        assert set(answer) == {"detail"}


@pytest.mark.anyio
async def test_a_streamed_body_over_the_limit_is_refused_as_it_passes_it() -> None:
    async def chunks():  # no Content-Length: counted as it streams
        for _ in range(5):
            yield b"x" * 30

    async with client() as http:
        refused = await http.post("/v1/audio/speech", content=chunks())
    assert refused.status_code == 413 and refused.json()["error"]["type"] == "invalid_request_error"
