"""ASGI middleware for the two checks that must happen before a body is parsed.

- Body size: a `Content-Length` over the limit is refused at once; a chunked body is
  counted as it streams and refused the moment it passes the limit.
- API key: with `API_KEY` set, every path but `/health` needs the key, as `X-API-Key: <key>`
  or as `Authorization: Bearer <key>` (what OpenAI clients, TEI, Infinity and vLLM send).
  Both sides are hashed and compared with `hmac.compare_digest`, so the comparison takes
  the same time whatever the guess (no early exit, no length leak). The key is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A `{"detail": ...}` JSON error answered straight from ASGI middleware."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


def keys_match(expected: str, given: bytes | None) -> bool:
    """Constant-time comparison of an API key (hash first, so lengths leak nothing either)."""
    return hmac.compare_digest(_digest(expected), _digest(given if given is not None else b"\x00missing"))


def bearer_token(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case), else None."""
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


class ApiKeyMiddleware:
    """The service's key, as `X-API-Key: <key>` or `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self._key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key")
        sent_as = "X-API-Key"
        if given is None:
            given, sent_as = bearer_token(headers), "bearer token"
        if not keys_match(self._key, given):
            reason = (
                "missing key: send X-API-Key: <key> or Authorization: Bearer <key>" if given is None
                else f"wrong {sent_as}"
            )
            await send_json(send, 401, f"unauthorized: {reason} (this service requires the key set in its API_KEY)",
                            [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = (
            f"request body is larger than the service's limit of {self.max_bytes} bytes "
            "(GPU_MAX_BODY_BYTES); split the request"
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                await send_json(send, 400, "invalid Content-Length header")
                return
            if too_big:
                await send_json(send, 413, message, [(b"connection", b"close")])
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
            if received > self.max_bytes:
                await send_json(send, 413, message, [(b"connection", b"close")])
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
