"""Serving the MCP server over HTTP (streamable HTTP at /mcp, or legacy SSE), with a bearer token."""

from __future__ import annotations

import hashlib
import hmac
import json

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send


class BearerTokenMiddleware:
    """Refuse every HTTP request without `Authorization: Bearer <token>` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        given = header[7:] if header[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self._digest):
            body = json.dumps({"error": "unauthorized: send Authorization: Bearer <the bridge's --auth-token>"}).encode()
            await send({
                "type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            })
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, transport: str, host: str, token: str | None) -> ASGIApp:
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    return BearerTokenMiddleware(app, token) if token else app
