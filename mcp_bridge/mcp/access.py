"""The clients' scopes and quotas over MCP (HTTP transports), as one middleware of the MCP server.

The HTTP door (http_api/identity.py) put the caller's client in the request's ASGI scope; the SDK hands every
MCP message the HTTP request that carried it, so each `tools/call` finds its own client (and the class its
POST asked for) there. The door's own contextvar is not relied on: the SDK may run a session's handlers in
tasks started by another request of the session (over SSE, the client's GET /sse). Per message, then: `tools/list` shows only the tools the client may call; `tools/call` of any other is a tool error
naming the ones it may; the call is admitted through the client's quota (a tool error saying when to retry
when over), its model held to the client's list, and `current_caller` set while the tool runs. Over stdio, or
an HTTP bridge without tokens, there is no client: every right.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent

from mcp_bridge.access.gate import Access
from mcp_bridge.access.identity import Client, caller_of, client_of
from mcp_bridge.access.items import tool_items
from mcp_bridge.access.quota import OverQuota, TooLarge
from mcp_bridge.access.scopes import OutOfScope, may_call
from mcp_bridge.pool.caller import Caller, current_caller

MODEL_ARGUMENTS = {"gpu_bertscore": ("model_type", "model")}
"""The arguments that name a tool's model, first the one set when the client's first model is chosen."""


def tool_error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def _scope_of(ctx: ServerRequestContext[Any, Any]) -> Mapping[str, Any]:
    scope = getattr(ctx.request, "scope", None)
    return scope if isinstance(scope, Mapping) else {}


class ClientScopes:
    """An MCP server middleware (`MCPServer.middleware`) over `access`; see the module's docstring."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        scope = _scope_of(ctx)
        client = client_of(scope)
        if client is None or ctx.method not in ("tools/list", "tools/call"):
            return await call_next(ctx)
        if ctx.method == "tools/list":
            listed = await call_next(ctx)
            if isinstance(listed, dict) and isinstance(listed.get("tools"), list):
                listed = {**listed, "tools": [t for t in listed["tools"] if may_call(client, t.get("name", ""))]}
            return listed
        return await self._call(ctx, call_next, client, caller_of(scope, client))

    async def _call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext, client: Client,
                    caller: Caller) -> HandlerResult:
        params = dict(ctx.params or {})
        tool, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(tool, str) or not isinstance(arguments, Mapping):
            return await call_next(ctx)  # malformed: the SDK's own validation answers
        names = MODEL_ARGUMENTS.get(tool, ("model",))
        asked = next((arguments[n] for n in names if isinstance(arguments.get(n), str)), None)
        with ExitStack() as stack:
            try:
                admission = stack.enter_context(self.access.admit(client, tool, tool_items(tool, arguments), asked))
            except (OutOfScope, TooLarge, OverQuota) as exc:
                return tool_error(f"Error executing tool {tool}: {exc}")
            if admission.model != asked:
                params["arguments"] = {**arguments, names[0]: admission.model}
                ctx = replace(ctx, params=params)
            reset = current_caller.set(caller)
            try:
                return await call_next(ctx)
            finally:
                current_caller.reset(reset)
