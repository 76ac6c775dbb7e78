"""The MCP server: seven tools an agent can call, over the bridge's host pool.

Each tool has a title, a description that says when to use it and what it costs,
typed and bounded parameters (the service's limits, so bad calls fail here), an
output schema, and annotations. Results carry a short human-readable summary as text
and the data as structured content, so a 2,000-vector answer does not flood a
model's context. Every failure is a `ToolError` whose message says what happened
and what to do next, with secrets redacted.
"""



import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from gpu_protocol.bertscore import BertScoreRequest
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.limits import SIMILARITY_MATRIX_MAX, SIMILARITY_TOP_K_MAX
from gpu_protocol.rerank import RerankRequest
from gpu_protocol.similarity import SimilarityRequest
from gpu_protocol.status import StatusResponse
from mcp_bridge import __version__
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import redactor
from mcp_bridge.mcp.embed import (
    BertScoreOutput,
    EmbedOutput,
    HealthOutput,
    InfoOutput,
    Match,
    RerankOutput,
    SimilarityOutput,
    StatusOutput,
    embed_output,
    rerank_output,
)
from mcp_bridge.mcp.errors import PlainErrorsMCPServer, explain, tool_request

T = TypeVar("T")

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)
PROGRESS_MIN_SHARDS = 2


def _result(summary: str, output: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=summary)],
        structured_content=output.model_dump(mode="json"),
    )


def build_server(bridge: Bridge) -> MCPServer:
    """The MCP server for a (started) bridge."""
    limits = bridge.config.limits
    redact = redactor(bridge.config)
    server = PlainErrorsMCPServer(
        "gpu-bridge",
        title="GPU bridge",
        version=__version__,
        instructions=(
            "Borrow GPU compute from a pool of GPU hosts. Use gpu_similarity to compare or rank texts "
            "(cheap for your context), gpu_rerank to order retrieved candidates with a cross-encoder, gpu_bertscore to score "
            "generated text against references, gpu_embed "
            "only when you need raw vectors. gpu_health/gpu_status diagnose problems."
        ),
    )

    # Blank texts are refused by the wire schema's own rule (tool_request), with the index.
    Texts = Annotated[
        list[Annotated[str, Field(max_length=limits.maxTextLength)]],
        Field(min_length=1, max_length=limits.maxBatchSize,
              description=f"Texts, 1 to {limits.maxBatchSize}, each non-blank and up to {limits.maxTextLength} "
              "characters."),
    ]
    Model = Annotated[
        str | None,
        Field(default=None, max_length=200, description="Model name; the bridge's or host's default when omitted."),
    ]

    async def guarded(work: Awaitable[T]) -> T:
        if bridge.not_configured:
            if asyncio.iscoroutine(work):
                work.close()
            raise ToolError(bridge.not_configured)
        try:
            return await work
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence; bugs are logged in explain()
            raise ToolError(redact(explain(exc))) from None

    def progress_reporter(ctx: Context) -> Callable[[int, int], Awaitable[None]]:
        async def report(done: int, total: int) -> None:
            if total >= PROGRESS_MIN_SHARDS:
                await ctx.report_progress(done, total, f"{done}/{total} shards done")

        return report

    # ------------------------------------------------------------------ gpu_health

    @server.tool(
        title="GPU hosts: liveness",
        description="Check which GPU hosts are up (fast, answers within a few seconds even if hosts hang). "
        "Use first when GPU tools fail. Costs nothing on the GPUs.",
        annotations=READ_ONLY,
    )
    async def gpu_health() -> Annotated[CallToolResult, HealthOutput]:
        rows = await guarded(bridge.gpu.health())
        healthy = sum(1 for r in rows if r.ok)
        lines = [
            f"- {r.name}: {('degraded' if r.problems else 'ok') if r.ok else 'DOWN'}"
            + (f" on {r.device}" if r.device else "")
            + (f" ({r.latency_ms} ms)" if r.latency_ms is not None else "")
            + (f" - {r.error}" if r.error else "")
            + (f" - {'; '.join(r.problems)}" if r.ok and r.problems else "")
            for r in rows
        ]
        hosts = [r.model_copy(update={"error": redact(r.error)} if r.error else {}).model_dump(exclude_unset=True)
                 for r in rows]
        out = HealthOutput(healthy=healthy, total=len(rows), hosts=hosts)
        return _result(redact(f"{healthy}/{len(rows)} GPU hosts healthy\n" + "\n".join(lines)), out)

    # ------------------------------------------------------------------ gpu_info

    @server.tool(
        title="GPU hosts: devices and models",
        description="Describe every GPU host: device name, VRAM, torch/CUDA versions, loaded and allowed models, "
        "limits. Use to choose a model or to explain a 'model not allowed' error.",
        annotations=READ_ONLY,
    )
    async def gpu_info() -> Annotated[CallToolResult, InfoOutput]:
        rows = await guarded(bridge.gpu.info())
        lines = []
        for r in rows:
            info = r.info
            if info is not None:
                loaded = ", ".join(f"{m.name} ({m.kind})" for m in info.models) or "none"
                vram = f", {info.vram_free_mb or 0:.0f}/{info.vram_total_mb:.0f} MiB free" if info.vram_total_mb else ""
                lines.append(f"- {r.name}: {info.device} ({info.device_name}{vram}); loaded: {loaded}")
            else:
                lines.append(f"- {r.name}: unavailable - {r.error}")
        return _result(redact("\n".join(lines)), InfoOutput(hosts=[r.model_dump(mode="json", exclude_unset=True) for r in rows]))

    # ------------------------------------------------------------------ gpu_status

    @server.tool(
        title="GPU pool: load and failures",
        description="The pool's view of every host (state healthy/degraded/ejected/unhealthy/cooling-down, in-flight "
        "requests, latency, failures, last error) plus each host's queue and job progress. Use to see why "
        "calls are slow or failing.",
        annotations=READ_ONLY,
    )
    async def gpu_status() -> Annotated[CallToolResult, StatusOutput]:
        view = await guarded(bridge.gpu.status())
        lines = [f"strategy {view.strategy}, mode {view.mode}"]
        for h in view.hosts:
            service = h.service if isinstance(h.service, StatusResponse) else None
            jobs = ", ".join(f"{j.kind} {j.model} {j.done}/{j.total}" for j in service.active_jobs) if service else ""
            lines.append(
                f"- {h.name}: {h.state}, {h.in_flight} in flight, queue {service.queue_depth if service else 'unreachable'}, "
                f"served {h.served}, failed {h.failed}"
                + (f", jobs: {jobs}" if jobs else "")
                + (f", last error: {h.last_error}" if h.last_error else "")
            )
        out = StatusOutput(strategy=view.strategy, mode=view.mode, panics=view.panics,
                           hosts=[h.model_dump(mode="json") for h in view.hosts])
        return _result(redact("\n".join(lines)), out)

    # ------------------------------------------------------------------ gpu_embed

    @server.tool(
        title="Embed texts on a GPU",
        description="Turn texts into embedding vectors on the GPU pool. Returns the vectors in structured content "
        "and only a summary as text. Prefer gpu_similarity if you only need to compare or rank texts. "
        "Large calls are split across hosts; cost grows with the number and length of texts.",
        annotations=READ_ONLY,
    )
    async def gpu_embed(
        texts: Texts,
        ctx: Context,
        model: Model = None,
        normalize: Annotated[bool, Field(description="L2-normalise vectors (default true).")] = True,
        dimensions: Annotated[int | None, Field(ge=1, le=65_536, description="Truncate to this many dimensions (Matryoshka), renormalised.")] = None,
        host: Annotated[str | None, Field(max_length=64, description="Run on this host only (by name).")] = None,
        encoding: Annotated[Literal["auto", "float", "base64"], Field(
            description="float: lists of numbers. base64: one little-endian float32 blob (4x smaller, exact; "
            f"for programs, not for reading). auto: float when the result fits in {limits.maxResultMB:g} MiB, "
            "else base64. The result's `encoding` says which was used.")] = "auto",
    ) -> Annotated[CallToolResult, EmbedOutput]:
        request = tool_request(EmbedRequest, texts=texts, model=model, normalize=normalize, dimensions=dimensions)
        result = await guarded(bridge.gpu.embed_request(request, host=host, progress=progress_reporter(ctx)))
        out = embed_output(result, encoding, limits.maxResultMB)
        chosen = out.encoding
        field = "`embeddings_base64`, little-endian float32" if chosen == "base64" else "`embeddings`"
        summary = (
            f"Embedded {out.count} texts with {out.model} into {out.dimensions}-dimensional vectors on "
            f"{', '.join(out.hosts)} in {out.seconds:.2f}s"
            + (f"; {out.truncated} texts were truncated" if out.truncated else "")
            + f". The vectors are in the structured content (field {field}, in input order)."
        )
        return _result(summary, out)

    # ------------------------------------------------------------------ gpu_bertscore

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
            BertScoreRequest, candidates=candidates, references=references, lang=lang,
            model_type=model_type or model, num_layers=num_layers, idf=idf, rescale_with_baseline=rescale_with_baseline,
        )
        result = await guarded(bridge.gpu.bertscore(request, progress=progress_reporter(ctx)))
        r = result.response
        out = BertScoreOutput(
            precision=r.precision, recall=r.recall, f1=r.f1, mean_precision=r.mean.precision,
            mean_recall=r.mean.recall, mean_f1=r.mean.f1, model=r.model, num_layers=r.num_layers, hash=r.hash,
            truncated=r.truncated, hosts=result.hosts, seconds=round(result.seconds, 3),
        )
        shown = ", ".join(f"{x:.4f}" for x in r.f1[:10]) + (" ..." if len(r.f1) > 10 else "")
        summary = (
            f"BERTScore of {len(r.f1)} pairs with {r.model} (layer {r.num_layers}): mean P {r.mean.precision:.4f}, "
            f"R {r.mean.recall:.4f}, F1 {r.mean.f1:.4f}. F1 per pair: {shown}. Hash: {r.hash}"
        )
        return _result(summary, out)

    # ------------------------------------------------------------------ gpu_similarity

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
        query: Annotated[str | None, Field(min_length=1, max_length=limits.maxTextLength, description="mode=query: the query text.")] = None,
        texts_b: Annotated[Texts | None, Field(description="mode=pairs: second text of each pair, same length as texts.")] = None,
        top_k: Annotated[int, Field(ge=1, le=SIMILARITY_TOP_K_MAX, description="mode=query: how many matches to return.")] = 10,
        model: Model = None,
        host: Annotated[str | None, Field(max_length=64, description="Run on this host only (by name).")] = None,
    ) -> Annotated[CallToolResult, SimilarityOutput]:
        request = tool_request(
            SimilarityRequest, mode=mode, texts=texts, texts_b=texts_b, query=query, top_k=top_k, model=model
        )
        result = await guarded(bridge.gpu.similarity(request, host=host, progress=progress_reporter(ctx)))
        r = result.response
        mode = request.chosen_mode
        out = SimilarityOutput(mode=mode, model=r.model, hosts=result.hosts, seconds=round(result.seconds, 3))
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
        return _result(summary + f" [{r.model} on {', '.join(result.hosts)}]", out)

    # ------------------------------------------------------------------ gpu_rerank

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
        query: Annotated[str, Field(min_length=1, max_length=limits.maxTextLength, description="What the documents are ranked against.")],
        documents: Texts,
        ctx: Context,
        top_n: Annotated[int | None, Field(ge=1, le=limits.maxBatchSize, description="How many matches to return, best first; all when omitted.")] = 10,
        model: Model = None,
        host: Annotated[str | None, Field(max_length=64, description="Run on this host only (by name).")] = None,
    ) -> Annotated[CallToolResult, RerankOutput]:
        request = tool_request(RerankRequest, query=query, documents=documents, top_n=top_n, model=model)
        outcome = await guarded(bridge.gpu.rerank(request, host=host, progress=progress_reporter(ctx)))
        summary, out = rerank_output(outcome, documents)
        return _result(summary, out)

    return server

