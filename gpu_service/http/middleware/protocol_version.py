"""Protocol version negotiation on the service side: one ASGI middleware for every route.

Every answer carries the service's protocol version (`X-GPU-Protocol`). A caller that states an
older version, or none (release 0.3.0's bridge, which reads answers strictly), gets each answer in
its own version's shape: `gpu_protocol.versions.shape_answer` drops the fields later versions
added. Only answers whose shape differs for that caller are buffered and rewritten (today: `/info`
for version 1); every other answer, vectors included, streams through untouched.
"""

from __future__ import annotations

import json

from gpu_protocol.auth import ASGIApp, Message, Receive, Scope, Send
from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION, answer_fields_to_drop, caller_version, shape_answer

_HEADER = PROTOCOL_HEADER.lower().encode()
_VERSION = str(PROTOCOL_VERSION).encode()


class ProtocolVersionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stated = dict(scope["headers"]).get(_HEADER)
        version = caller_version(stated.decode("latin-1") if stated is not None else None)
        path: str = scope["path"]
        if not answer_fields_to_drop(path, version):
            await self.app(scope, receive, _stating_version(send))
            return
        await self.app(scope, receive, _Reshaper(send, path, version).send)


def _with_version(message: Message) -> Message:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
    return {**message, "headers": [*headers, (_HEADER, _VERSION)]}


def _stating_version(send: Send) -> Send:
    async def stating(message: Message) -> None:
        await send(_with_version(message) if message["type"] == "http.response.start" else message)

    return stating


class _Reshaper:
    """Holds a JSON answer until its last byte, then sends it in the caller's version's shape."""

    def __init__(self, send: Send, path: str, version: int) -> None:
        self._send = send
        self._path = path
        self._version = version
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if message["status"] == 200 and headers.get(b"content-type", b"").startswith(b"application/json"):
                self._start = message
                return
            await self._send(_with_version(message))
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = json.dumps(shape_answer(self._path, json.loads(b"".join(self._chunks)), self._version)).encode()
        kept = [(k, v) for k, v in self._start.get("headers", []) if k.lower() != b"content-length"]
        start = {**self._start, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
        await self._send(_with_version(start))
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
