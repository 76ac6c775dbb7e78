"""Who is calling over HTTP: one pure-ASGI middleware in front of MCP (/mcp, /sse) and the `/v1` API.

It resolves the bearer token to a client (constant-time, every token compared) and refuses an unknown or
missing one with 401 in the shape the caller expects (OpenAI's on `/v1`, `{"detail"}` elsewhere, as before
clients existed); reads `X-GPU-Priority` (400 for a bad value); refuses a `/v1` route outside the client's
tools (403); and sets `current_caller` for the request. The client rides along in the ASGI scope
(`access.identity.client_of`), where the MCP server's middleware (mcp/access.py) finds it for each tool call, and the
`/v1` routes find it to admit their calls. Every `/v1` answer after an admission carries
`x-ratelimit-remaining-requests` / `-items` for the limits the client has.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpu_protocol.auth import bearer_token, send_json
from gpu_protocol.priority import PRIORITY_HEADER, parse_priority
from mcp_bridge.access.gate import Access
from mcp_bridge.access.identity import CALLER_KEY, CLIENT_KEY
from mcp_bridge.access.quota import Remaining
from mcp_bridge.access.scopes import ROUTE_TOOLS, OutOfScope
from mcp_bridge.http_api.errors import ApiError, send_unauthorized
from mcp_bridge.pool.caller import current_caller

REFUSAL = "unauthorized: send Authorization: Bearer <the bridge's --auth-token or your client's token>"
REMAINING_KEY = "gpu_bridge.remaining"
"""Where an admission leaves the client's `Remaining` for the rate-limit headers."""
_PRIORITY = PRIORITY_HEADER.lower().encode()


def note_remaining(scope: Scope, remaining: Remaining) -> None:
    scope[REMAINING_KEY] = remaining


def ratelimit_headers(remaining: Remaining) -> list[tuple[bytes, bytes]]:
    pairs = (("x-ratelimit-remaining-requests", remaining.requests), ("x-ratelimit-remaining-items", remaining.items))
    return [(name.encode(), str(max(0, value)).encode()) for name, value in pairs if value is not None]


def under(scope: Scope, prefixes: Collection[str]) -> bool:
    path = scope.get("path", "")
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class ClientIdentity:
    """The bridge's HTTP door (see the module's docstring)."""

    def __init__(self, app: ASGIApp, access: Access, v1_prefixes: Collection[str]) -> None:
        self.app, self.access, self.v1_prefixes = app, access, v1_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        v1 = under(scope, self.v1_prefixes)
        client = self.access.identify(bearer_token(headers))
        if client is None:
            await (send_unauthorized(send) if v1 else send_json(send, 401, REFUSAL, [(b"www-authenticate", b"Bearer")]))
            return
        try:
            asked = parse_priority(headers[_PRIORITY].decode("latin-1") if _PRIORITY in headers else None)
            if v1 and (tool := ROUTE_TOOLS.get(scope["path"])):
                self.access.check_scope(client, tool, scope["path"])
        except ValueError as exc:
            await self._refuse(scope, send, 400, str(exc), "invalid_priority")
            return
        except OutOfScope as exc:
            await self._refuse(scope, send, 403, str(exc), "out_of_scope")
            return
        scope[CLIENT_KEY], scope[CALLER_KEY] = client, client.caller(asked)
        reset = current_caller.set(scope[CALLER_KEY])
        try:
            await self.app(scope, receive, self._with_ratelimit_headers(scope, send))
        finally:
            current_caller.reset(reset)

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str, code: str) -> None:
        if not under(scope, self.v1_prefixes):
            await send_json(send, status, message)
            return
        response = ApiError(status, message, code=code).response()
        await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    @staticmethod
    def _with_ratelimit_headers(scope: Scope, send: Send) -> Send:
        async def sending(message: Message) -> None:
            remaining = scope.get(REMAINING_KEY)
            if message["type"] == "http.response.start" and isinstance(remaining, Remaining):
                message = {**message, "headers": [*message.get("headers", []), *ratelimit_headers(remaining)]}
            await send(message)

        return sending
