"""Keys: the constant-time check, where a request carries its key, and one ASGI middleware that applies them.

The service takes its key as `X-API-Key: <key>` or `Authorization: Bearer <key>` (what OpenAI
clients, TEI, Infinity and vLLM send); the bridge's HTTP transport takes a bearer token. Both
run `KeyRequired`, differing only in the headers they accept and the words of a refusal.
Keys are hashed before `hmac.compare_digest`, so the comparison takes the same time whatever
the guess (no early exit, no length leak), and never appear in a log or an answer.

Plain ASGI (no framework import), so the bridge and the service share it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any

from gpu_protocol.openai_errors import error_body
from gpu_protocol.routes import API_KEY_HEADER, AUTHORIZATION_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_API_KEY = API_KEY_HEADER.lower().encode()
_AUTHORIZATION = AUTHORIZATION_HEADER.lower().encode()


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None,
                    *, openai_shaped: bool = False) -> None:
    """A `{"detail": ...}` JSON error answered straight from ASGI middleware; `openai_shaped`: OpenAI's
    `error` beside it (gpu_protocol/openai_errors.py)."""
    body = json.dumps(error_body(status, detail, openai_shaped=openai_shaped)).encode()
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
    scheme, _, token = headers.get(_AUTHORIZATION, b"").partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


def presented_key(headers: Mapping[bytes, bytes], accept_x_api_key: bool) -> tuple[bytes | None, str]:
    """The key a request carries (lower-cased ASGI header names), and how it was sent: `X-API-Key`
    when accepted and present, else the bearer token."""
    if accept_x_api_key and _API_KEY in headers:
        return headers[_API_KEY], API_KEY_HEADER
    return bearer_token(headers), "bearer token"


Refusal = Callable[[str | None], str]
"""The words of a 401: given None for a missing key, else how the wrong key was sent."""


class KeyRequired:
    """Refuse every HTTP request but `open_paths` that does not carry `key` (401, `WWW-Authenticate: Bearer`).

    With `key` None everything passes: the server runs without a key."""

    def __init__(
        self,
        app: ASGIApp,
        key: str | None,
        *,
        refusal: Refusal,
        accept_x_api_key: bool = False,
        open_paths: Collection[str] = frozenset(),
        respond: Callable[[Send], Awaitable[None]] | None = None,
        openai_shaped: str | None = None,
    ) -> None:
        self.app = app
        self._key = key
        self._refusal = refusal
        self._accept_x_api_key = accept_x_api_key
        self._open_paths = open_paths
        self._respond = respond
        """How to answer a refused request in another shape than `{"detail": refusal}` (OpenAI's, say)."""
        self._openai_shaped = openai_shaped
        """A path prefix whose refusals carry OpenAI's `error` beside `detail`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is None or scope["type"] != "http" or scope["path"] in self._open_paths:
            await self.app(scope, receive, send)
            return
        given, sent_as = presented_key(dict(scope["headers"]), self._accept_x_api_key)
        if not keys_match(self._key, given):
            if self._respond is not None:
                await self._respond(send)
                return
            shaped = self._openai_shaped is not None and scope["path"].startswith(self._openai_shaped)
            await send_json(send, 401, self._refusal(None if given is None else sent_as),
                            [(b"www-authenticate", b"Bearer")], openai_shaped=shaped)
            return
        await self.app(scope, receive, send)
