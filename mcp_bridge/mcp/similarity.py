"""gpu_similarity: the tool, its summary and its output model.

No `from __future__ import annotations` here: the SDK reads the tool's signature at registration,
and its types are built from the bridge's limits.
"""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, WithJsonSchema

from gpu_protocol.limits import SIMILARITY_MATRIX_MAX, SIMILARITY_TOP_K_MAX
from gpu_protocol.similarity import SimilarityRequest
from mcp_bridge.client.results import SimilarityResult
from mcp_bridge.mcp.errors import tool_request
from mcp_bridge.mcp.tools import READ_ONLY, HostName, Match, Model, Tools, progress_reporter, result

Matrix = Annotated[
    list[list[float]],
    WithJsonSchema({"type": "array", "items": {"type": "array"}, "description": "Rows of cosine similarities."}),
]


class SimilarityOutput(BaseModel):
    mode: Literal["pairs", "query", "matrix"]
    model: str
    scores: list[float] | None = Field(default=None, description="pairs: cosine of texts[i] and texts_b[i].")
    matches: list[Match] | None = Field(default=None, description="query: best documents first.")
    matrix: Matrix | None = Field(default=None, description="matrix: cosine of every pair of texts.")
    hosts: list[str]
    seconds: float
def similarity_output(request: SimilarityRequest, found: SimilarityResult, texts: list[str]) -> tuple[str, SimilarityOutput]:
    r = found.response
    mode = request.chosen_mode
    out = SimilarityOutput(mode=mode, model=r.model, hosts=found.hosts, seconds=round(found.seconds, 3))
    if mode == "pairs":
        out.scores = [round(x, 6) for x in r.scores or []]
        summary = "Cosine per pair: " + ", ".join(f"{x:.4f}" for x in out.scores[:20]) + (
            " ..." if len(out.scores) > 20 else "")
    elif mode == "query":
        out.matches = [Match(index=m.index, score=round(m.score, 6), text=texts[m.index][:200])
                       for m in r.matches or []]
        summary = f"Best of {len(texts)} for the query: " + "; ".join(
            f"#{m.index} ({m.score:.4f}) {m.text[:60]!r}" for m in out.matches[:10])
    else:
        out.matrix = [[round(x, 6) for x in row] for row in r.matrix or []]
        summary = f"{len(texts)}x{len(texts)} cosine matrix in structured content (field `matrix`)."
    return summary + f" [{r.model} on {', '.join(found.hosts)}]", out


def register(server: MCPServer, tools: Tools) -> None:
    limits = tools.limits
    Text = Annotated[str, tools.text_limit]
    Texts = Annotated[list[Text], tools.batch_limit]

    @server.tool(
        title="Compare texts on a GPU",
        description="Cosine similarity of texts, computed on the GPU hosts; no vectors enter your context. "
        "Give `query` to rank `texts` (documents) against it, best top_k first; give `texts_b` to score "
        f"texts[i] vs texts_b[i]; give texts alone for the matrix of every pair (up to {SIMILARITY_MATRIX_MAX} "
        "texts). `mode` (query | pairs | matrix) overrides the choice. Use for search, reranking, "
        "deduplication, clustering. Costs one embedding per text.",
        annotations=READ_ONLY,
    )
    async def gpu_similarity(
        texts: Texts,
        ctx: Context,
        mode: Annotated[Literal["pairs", "query", "matrix"] | None, Field(
            description="query | pairs | matrix. Omit it: query if `query` is given, pairs if `texts_b` is, "
            "else matrix.")] = None,
        query: Annotated[Text | None, Field(description="mode=query: the query text.")] = None,
        texts_b: Annotated[Texts | None, Field(description="mode=pairs: second text of each pair, same length as texts.")] = None,
        top_k: Annotated[int, Field(ge=1, le=SIMILARITY_TOP_K_MAX, description="mode=query: how many matches to return.")] = 10,
        model: Model = None,
        host: HostName = None,
    ) -> Annotated[CallToolResult, SimilarityOutput]:
        request = tool_request(
            SimilarityRequest, limits, mode=mode, texts=texts, texts_b=texts_b, query=query, top_k=top_k, model=model
        )
        found = await tools.guarded(tools.gpu.similarity(request, host=host, progress=progress_reporter(ctx)))
        summary, out = similarity_output(request, found, texts)
        return result(summary, out)
