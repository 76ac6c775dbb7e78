"""What a client may use: the MCP tools its `tools` names (the `/v1` routes follow the same names), and per
task the models its `models` names. The diagnostics (gpu_health, gpu_info, gpu_status, and `GET /v1/models`,
which is gpu_info's listing) are open to every known client: they run nothing on a GPU."""

from __future__ import annotations

from typing import Literal

from gpu_protocol import routes
from gpu_protocol.speech_synthesis import SPEECH, VOICES
from gpu_protocol.transcribe import TRANSCRIPTIONS, TRANSLATIONS
from mcp_bridge.access.identity import Client
from mcp_bridge.client_rights import DIAGNOSTIC_TOOLS, TOOL_NAMES

Task = Literal["embed", "rerank", "bertscore", "transcribe", "speak"]

ROUTE_TOOLS = {
    "/v1/embeddings": "gpu_embed",
    "/v1/rerank": "gpu_rerank",
    routes.RERANK_V2: "gpu_rerank",
    TRANSCRIPTIONS: "gpu_transcribe",
    TRANSLATIONS: "gpu_transcribe",
    SPEECH: "gpu_speak",
    VOICES: "gpu_speak",
    "/v1/models": "gpu_info",
}
"""The tool each `/v1` route counts as, for scopes and quotas."""
TOOL_TASKS: dict[str, Task] = {
    "gpu_embed": "embed", "gpu_similarity": "embed", "gpu_rerank": "rerank", "gpu_bertscore": "bertscore",
    "gpu_transcribe": "transcribe", "gpu_speak": "speak",
}
"""The task whose `models` list holds the models a tool may use."""


class OutOfScope(Exception):
    """A tool, route or model this client may not use; the message says what it may."""


def may_call(client: Client, tool: str) -> bool:
    tools = client.rights.tools if client.rights else None
    return tools is None or tool in tools or tool in DIAGNOSTIC_TOOLS


def allowed_tools(client: Client) -> list[str]:
    return [t for t in TOOL_NAMES if may_call(client, t)]


def check_tool(client: Client, tool: str, route: str | None = None) -> None:
    if not may_call(client, tool):
        what = f"{route} (tool {tool})" if route else f"tool {tool}"
        raise OutOfScope(f"client {client.label!r} may not use {what}; it may use: {', '.join(allowed_tools(client))}")


def model_for(client: Client, tool: str, asked: str | None) -> str | None:
    """The model the call runs: `asked` when this client may use it, the first it may use when the call names
    none (None: no limit, the pool's default); OutOfScope for any other."""
    task = TOOL_TASKS.get(tool)
    allowed = getattr(client.rights.models, task) if client.rights and task else None
    if allowed is None:
        return asked
    if asked is None:
        return allowed[0]
    if asked not in allowed:
        raise OutOfScope(f"client {client.label!r} may not use the {task} model {asked[:200]!r}; it may use: "
                         f"{', '.join(allowed)}")
    return asked
