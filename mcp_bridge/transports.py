"""Serving the MCP server over HTTP (streamable HTTP at /mcp, or legacy SSE), with a bearer token."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_service.security import bearer_token, keys_match, send_json


class BearerTokenMiddleware:
    """Refuse every HTTP request without `Authorization: Bearer <token>` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not keys_match(self._token, bearer_token(dict(scope["headers"]))):
            await send_json(send, 401, "unauthorized: send Authorization: Bearer <the bridge's --auth-token>",
                            [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, transport: str, host: str, token: str | None) -> ASGIApp:
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    return BearerTokenMiddleware(app, token) if token else app
