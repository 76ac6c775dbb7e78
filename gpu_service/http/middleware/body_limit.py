"""The body-size limit, before a body is parsed: a `Content-Length` over the limit is refused at once;
a chunked body is counted as it streams and refused the moment it passes the limit."""

from __future__ import annotations

from gpu_protocol.auth import ASGIApp, Message, Receive, Scope, Send, send_json
from gpu_protocol.routes import OPENAI_SHAPED_PREFIX


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}
        """Paths with their own limit (audio uploads), and the variable that sets it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, variable = self.path_limits.get(scope["path"], (self.max_bytes, "GPU_MAX_BODY_BYTES"))
        message = f"request body is larger than the service's limit of {max_bytes} bytes ({variable}); split the request"
        shaped = scope["path"].startswith(OPENAI_SHAPED_PREFIX)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > max_bytes
            except ValueError:
                await send_json(send, 400, "invalid Content-Length header", openai_shaped=shaped)
                return
            if too_big:
                await send_json(send, 413, message, [(b"connection", b"close")], openai_shaped=shaped)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit before the app sees any of it.
        chunks: list[bytes] = []
        received = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunk = msg.get("body", b"")
            received += len(chunk)
            if received > max_bytes:
                await send_json(send, 413, message, [(b"connection", b"close")], openai_shaped=shaped)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
