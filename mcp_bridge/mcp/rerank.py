"""gpu_rerank: the tool, its summary and its output model.

No `from __future__ import annotations` here: the SDK reads the tool's signature at registration,
and its types are built from the bridge's limits.
"""

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from gpu_protocol.rerank import RerankRequest
from mcp_bridge.client.results import RerankOutcome
from mcp_bridge.mcp.errors import tool_request
from mcp_bridge.mcp.tools import READ_ONLY, HostName, Match, Model, Tools, progress_reporter, result


class RerankOutput(BaseModel):
    matches: list[Match] = Field(
        description="Best first: index into `documents`, the reranker's relevance score (0 to 1), the document's "
        "first 200 characters."
    )
    model: str
    hosts: list[str] = Field(description="Hosts that scored the documents.")
    seconds: float


def rerank_output(outcome: RerankOutcome, documents: list[str]) -> tuple[str, RerankOutput]:
    """gpu_rerank's summary and structured result (texts cut as gpu_similarity cuts them)."""
    r = outcome.response
    matches = [Match(index=m.index, score=round(m.relevance_score, 6), text=documents[m.index][:200])
               for m in r.results]
    out = RerankOutput(matches=matches, model=r.model, hosts=outcome.hosts, seconds=round(outcome.seconds, 3))
    summary = f"Best of {len(documents)} documents for the query: " + "; ".join(
        f"#{m.index} ({m.score:.4f}) {m.text[:60]!r}" for m in matches[:10]
    ) + f" [{r.model} on {', '.join(outcome.hosts)}]"
    return summary, out


def register(server: MCPServer, tools: Tools) -> None:
    limits = tools.limits
    Text = Annotated[str, tools.text_limit]
    Texts = Annotated[list[Text], tools.batch_limit]

    @server.tool(
        title="Rerank documents on a GPU",
        description="Order candidate documents by relevance to a query with a cross-encoder reranker on the GPU "
        "hosts (more accurate than gpu_similarity's cosine, and costlier: one model pass per document). Use "
        "after a first retrieval (gpu_similarity, keyword search) to order its candidates; returns the top_n "
        f"best first, with scores from 0 to 1. Up to {limits.maxBatchSize} documents; large calls are split "
        "across the hosts that rerank and merged exactly.",
        annotations=READ_ONLY,
    )
    async def gpu_rerank(
        query: Annotated[Text, Field(description="What the documents are ranked against.")],
        documents: Texts,
        ctx: Context,
        top_n: Annotated[int | None, Field(ge=1, le=limits.maxBatchSize, description="How many matches to return, best first; all when omitted.")] = 10,
        model: Model = None,
        host: HostName = None,
    ) -> Annotated[CallToolResult, RerankOutput]:
        request = tool_request(RerankRequest, limits, query=query, documents=documents, top_n=top_n, model=model)
        outcome = await tools.guarded(tools.gpu.rerank(request, host=host, progress=progress_reporter(ctx)))
        summary, out = rerank_output(outcome, documents)
        return result(summary, out)
