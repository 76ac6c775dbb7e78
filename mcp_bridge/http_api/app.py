"""Serving over HTTP: MCP (streamable HTTP at /mcp, or legacy SSE), OpenAI's embeddings API at /v1,
Cohere's v2 rerank at /v2/rerank and the pool's Prometheus metrics at /metrics, behind the bridge's tokens: the `clients` of its config and the single
`--auth-token` (http_api/identity.py)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_bridge.access.gate import Access
from mcp_bridge.http_api.identity import ClientIdentity, under
from mcp_bridge.http_api.metrics import PATH as METRICS
from mcp_bridge.http_api.openai import PREFIXES


def http_app(server: MCPServer, transport: str, host: str, access: Access | None,
             openai: ASGIApp | None = None, metrics: ASGIApp | None = None) -> ASGIApp:
    """MCP at /mcp (or /sse), with `openai` the OpenAI-compatible API at /v1, with `metrics` /metrics, behind
    `access` (None: open)."""
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    if openai is not None:
        app = routed(PREFIXES, openai, app)
    if metrics is not None:
        app = routed((METRICS,), metrics, app)
    return ClientIdentity(app, access, PREFIXES) if access is not None else app


def routed(prefixes: tuple[str, ...], to: ASGIApp, other: ASGIApp) -> ASGIApp:
    """HTTP requests under `prefixes` to `to`, everything else (MCP, lifespan) to `other`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and under(scope, prefixes):
            await to(scope, receive, send)
        else:
            await other(scope, receive, send)

    return app
