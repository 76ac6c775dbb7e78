"""Serving the MCP server over HTTP (streamable HTTP at /mcp, or legacy SSE), with a bearer token."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from gpu_protocol.auth import KeyRequired

REFUSAL = "unauthorized: send Authorization: Bearer <the bridge's --auth-token>"


class BearerTokenMiddleware(KeyRequired):
    """Refuse every HTTP request without `Authorization: Bearer <token>` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app, token, refusal=lambda sent_as: REFUSAL)


def http_app(server: MCPServer, transport: str, host: str, token: str | None) -> ASGIApp:
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    return BearerTokenMiddleware(app, token) if token else app
