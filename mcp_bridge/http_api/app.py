"""Serving over HTTP: MCP (streamable HTTP at /mcp, or legacy SSE), OpenAI's embeddings API at /v1 and
Cohere's v2 rerank at /v2/rerank, behind the bridge's tokens: the `clients` of its config and the single
`--auth-token` (http_api/identity.py)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_bridge.access.gate import Access
from mcp_bridge.http_api.identity import ClientIdentity, under
from mcp_bridge.http_api.openai import PREFIXES


def http_app(server: MCPServer, transport: str, host: str, access: Access | None,
             openai: ASGIApp | None = None) -> ASGIApp:
    """MCP at /mcp (or /sse), and with `openai` the OpenAI-compatible API at /v1, behind `access` (None: open)."""
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    if openai is not None:
        app = route_v1(openai, app)
    return ClientIdentity(app, access, PREFIXES) if access is not None else app


def route_v1(openai: ASGIApp, other: ASGIApp) -> ASGIApp:
    """`/v1/...` and `/v2/...` HTTP requests to `openai`, everything else (MCP, lifespan) to `other`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and under(scope, PREFIXES):
            await openai(scope, receive, send)
        else:
            await other(scope, receive, send)

    return app
