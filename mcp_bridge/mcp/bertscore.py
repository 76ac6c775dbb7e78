"""gpu_bertscore: the tool, its summary and its output model.

No `from __future__ import annotations` here: the SDK reads the tool's signature at registration,
and its types are built from the bridge's limits.
"""

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from gpu_protocol.bertscore import BertScoreRequest
from mcp_bridge.client.results import ScoreResult
from mcp_bridge.mcp.errors import tool_request
from mcp_bridge.mcp.tools import READ_ONLY, Model, Tools, progress_reporter, result


class BertScoreOutput(BaseModel):
    precision: list[float]
    recall: list[float]
    f1: list[float]
    mean_precision: float
    mean_recall: float
    mean_f1: float
    model: str
    num_layers: int
    hash: str = Field(description="bert-score's settings hash, for reporting results reproducibly.")
    truncated: int
    hosts: list[str]
    seconds: float
def bertscore_output(scored: ScoreResult) -> tuple[str, BertScoreOutput]:
    r = scored.response
    out = BertScoreOutput(
        precision=r.precision, recall=r.recall, f1=r.f1, mean_precision=r.mean.precision,
        mean_recall=r.mean.recall, mean_f1=r.mean.f1, model=r.model, num_layers=r.num_layers, hash=r.hash,
        truncated=r.truncated, hosts=scored.hosts, seconds=round(scored.seconds, 3),
    )
    shown = ", ".join(f"{x:.4f}" for x in r.f1[:10]) + (" ..." if len(r.f1) > 10 else "")
    summary = (
        f"BERTScore of {len(r.f1)} pairs with {r.model} (layer {r.num_layers}): mean P {r.mean.precision:.4f}, "
        f"R {r.mean.recall:.4f}, F1 {r.mean.f1:.4f}. F1 per pair: {shown}. Hash: {r.hash}"
    )
    return summary, out


def register(server: MCPServer, tools: Tools) -> None:
    limits = tools.limits
    Texts = Annotated[list[Annotated[str, tools.text_limit]], tools.batch_limit]

    @server.tool(
        title="BERTScore on a GPU",
        description="Score candidate texts against references with BERTScore (precision, recall, F1 per pair "
        "and their means); same numbers as the bert-score package. Use to evaluate generated text. One "
        "reference per candidate.",
        annotations=READ_ONLY,
    )
    async def gpu_bertscore(
        candidates: Texts,
        references: Texts,
        ctx: Context,
        lang: Annotated[str | None, Field(max_length=16, description="Language code, e.g. en, de, zh.")] = None,
        model_type: Model = None,
        model: Annotated[str | None, Field(max_length=200, description="Alias of model_type.")] = None,
        num_layers: Annotated[int | None, Field(ge=0, le=128, description="Layer to use; bert-score's default when omitted.")] = None,
        idf: Annotated[bool, Field(description="Weight tokens by inverse document frequency over the references.")] = False,
        rescale_with_baseline: Annotated[bool, Field(description="Rescale with bert-score's baseline (needs a baseline for the model and lang).")] = False,
    ) -> Annotated[CallToolResult, BertScoreOutput]:
        request = tool_request(
            BertScoreRequest, limits, candidates=candidates, references=references, lang=lang,
            model_type=model_type or model, num_layers=num_layers, idf=idf, rescale_with_baseline=rescale_with_baseline,
        )
        scored = await tools.guarded(tools.gpu.bertscore(request, progress=progress_reporter(ctx)))
        summary, out = bertscore_output(scored)
        return result(summary, out)
