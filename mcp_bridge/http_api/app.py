"""Serving over HTTP: MCP (streamable HTTP at /mcp, or legacy SSE), OpenAI's embeddings API at /v1 and
Cohere's v2 rerank at /v2/rerank, behind one bearer token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_protocol.auth import KeyRequired
from mcp_bridge.http_api.errors import send_unauthorized
from mcp_bridge.http_api.openai import PREFIXES

REFUSAL = "unauthorized: send Authorization: Bearer <the bridge's --auth-token>"


class BearerTokenMiddleware(KeyRequired):
    """Refuse every HTTP request without `Authorization: Bearer <token>` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str, refuse: Callable[[Send], Awaitable[None]] | None = None) -> None:
        super().__init__(app, token, refusal=lambda sent_as: REFUSAL, respond=refuse)


def http_app(server: MCPServer, transport: str, host: str, token: str | None, openai: ASGIApp | None = None) -> ASGIApp:
    """MCP at /mcp (or /sse), and with `openai` the OpenAI-compatible API at /v1, one token for both."""
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    if token:
        app = BearerTokenMiddleware(app, token)
    if openai is not None:
        app = route_v1(BearerTokenMiddleware(openai, token, send_unauthorized) if token else openai, app)
    return app


def route_v1(openai: ASGIApp, other: ASGIApp) -> ASGIApp:
    """`/v1/...` and `/v2/...` HTTP requests to `openai`, everything else (MCP, lifespan) to `other`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and any(path == p or path.startswith(p + "/") for p in PREFIXES):
            await openai(scope, receive, send)
        else:
            await other(scope, receive, send)

    return app
