"""The MCP server: nine tools an agent can call, over the bridge's host pool.

Each tool has a title, a description that says when to use it and what it costs,
typed and bounded parameters (the service's limits, so bad calls fail here), an
output schema, and annotations. Results carry a short human-readable summary as text
and the data as structured content, so a 2,000-vector answer does not flood a
model's context. Every failure is a `ToolError` whose message says what happened
and what to do next, with secrets redacted.

This module only assembles: each tool family (its tools, summaries and output models) is
its own module here, registered in the order `tools/list` shows them.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from mcp_bridge import __version__
from mcp_bridge.access.gate import Access
from mcp_bridge.bridge import Bridge
from mcp_bridge.mcp import bertscore, embed, fleet, rerank, similarity, speak, transcribe
from mcp_bridge.mcp.access import ClientScopes
from mcp_bridge.mcp.errors import PlainErrorsMCPServer
from mcp_bridge.mcp.tools import Tools

INSTRUCTIONS = (
    "Borrow GPU compute from a pool of GPU hosts. Use gpu_similarity to compare or rank texts "
    "(cheap for your context), gpu_rerank to order retrieved candidates with a cross-encoder, gpu_bertscore to score "
    "generated text against references, gpu_transcribe for speech to text, gpu_speak for text to speech (voice "
    "replies, voice notes), "
    "gpu_embed only when you need raw vectors. gpu_health/gpu_status diagnose problems."
)
TOOL_FAMILIES = (fleet, embed, bertscore, similarity, rerank, transcribe, speak)
"""gpu_health, gpu_info, gpu_status; gpu_embed; gpu_bertscore; gpu_similarity; gpu_rerank; gpu_transcribe;
gpu_speak."""


def build_server(bridge: Bridge, access: Access | None = None) -> MCPServer:
    """The MCP server for a (started) bridge; `access`: the HTTP bridge's clients (their tools, models, quotas)."""
    server = PlainErrorsMCPServer("gpu-bridge", title="GPU bridge", version=__version__, instructions=INSTRUCTIONS,
                                  middleware=[ClientScopes(access)] if access is not None else None)
    tools = Tools(bridge, access)
    for family in TOOL_FAMILIES:
        family.register(server, tools)
    return server
