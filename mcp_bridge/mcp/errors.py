"""How failures reach the agent: one plain sentence that says what happened and what to do.

No error text an agent sees carries a Python exception class name, a pydantic dump or a
secret. Bad arguments are checked once, with the wire's texts check and the wire schema's own
validators (the same the service runs), and named with their index (`texts[1] is blank`); a bug in the bridge
is logged with its traceback and reported as an internal error.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import BaseModel, ValidationError

from gpu_protocol.validation import TextsRejected, validation_message
from mcp_bridge.config import ConfigError, LimitsConfig
from mcp_bridge.pool.errors import HostRejected, NoHostAvailable, PoolError, PoolTimeout

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=BaseModel)

INTERNAL_ERROR = "internal error in the bridge; see its log"


def invalid_arguments(exc: ValidationError) -> ToolError:
    return ToolError(f"invalid arguments: {validation_message(exc.errors())}")


TEXT_ARGUMENTS = frozenset({"texts", "texts_b", "query", "candidates", "references", "documents"})
"""The tools' arguments that carry texts: each held to the bridge's limits before the wire model sees it."""


def tool_request(request_model: type[RequestT], limits: LimitsConfig, /, **arguments: Any) -> RequestT:
    """The wire request for a tool call, checked once, before anything leaves the bridge.

    Its texts within the bridge's limits and non-blank (`LimitsConfig.check`, the check `/v1` and the
    hosts run), then the service's own request model, so the bridge refuses exactly what a host would,
    in the same words; the shards are copies of it, never validated again."""
    try:
        for name, value in arguments.items():
            if name in TEXT_ARGUMENTS and value is not None:
                limits.check(name, value)
        return request_model(**arguments)
    except TextsRejected as exc:
        raise ToolError(f"invalid arguments: {exc.message}") from None
    except ValidationError as exc:
        raise invalid_arguments(exc) from None


def explain(exc: Exception) -> str:
    """What happened and what the agent (or its user) can do about it."""
    if isinstance(exc, HostRejected):
        hints = {
            401: "the bridge's apiKey for this host is missing or wrong; fix it in the bridge configuration",
            403: "the model is not allowed on this host; call gpu_info for the allowed models",
            404: "the model or endpoint does not exist on this host",
            413: "the request is too large for this host; send fewer or shorter texts",
            422: "the input is invalid; fix the arguments",
            400: "the request is invalid; fix the arguments",
        }
        return f"{exc}. What to do: {hints.get(exc.status, 'check the arguments')}."
    if isinstance(exc, PoolTimeout):
        return f"{exc}. What to do: retry with fewer texts, or call gpu_status to see which hosts are slow or down."
    if isinstance(exc, NoHostAvailable):
        return f"{exc}. What to do: call gpu_status to see why hosts are out; wait and retry, or start a GPU host."
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, PoolError):
        return f"{exc}. What to do: call gpu_status for details."
    log.error("internal error in a tool call", exc_info=exc)
    return INTERNAL_ERROR


class PlainErrorsMCPServer(MCPServer):
    """An MCPServer whose argument errors read like the bridge's own.

    The SDK checks a call's arguments against the tool's signature before the tool runs and
    reports a failure as pydantic's multi-line dump (input values, error types, links).
    Here the same failure reads `invalid arguments: texts: List should have at least 1 item`."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(f"Error executing tool {name}: {invalid_arguments(cause)}") from cause
            raise
