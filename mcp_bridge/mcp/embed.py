"""What the tools return: their output schemas, and how a vector result is sized and encoded.

A result over the bridge's budget would not just be slow: MCP clients on the TypeScript SDK
drop the whole stdio connection on a message over 10 MiB, so `gpu_embed` chooses numbers or
the 4x smaller base64 blob by the result's size, measured without serialising it.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, WithJsonSchema

from mcp_bridge.client.client import EmbedResult
from mcp_bridge.client.reranking import RerankOutcome
from mcp_bridge.protocols.vectors import Array

# --------------------------------------------------------------------------- output schemas


class HealthOutput(BaseModel):
    healthy: int = Field(description="Hosts that serve (ok, or degraded: a default model missing, see problems).")
    total: int
    hosts: list[dict[str, Any]] = Field(description="Per host: name, url, type, ok, status, device, problems, latency_ms, error.")


class InfoOutput(BaseModel):
    hosts: list[dict[str, Any]] = Field(description="Per host: name, url, and its /info (device, VRAM, models) or error.")


class StatusOutput(BaseModel):
    strategy: str
    mode: Literal["normal", "panic"]
    panics: int
    hosts: list[dict[str, Any]] = Field(
        description="Per host: state, in_flight, ewma_latency_ms, consecutive_failures, last_error, served, "
        "and the host's own /status (queue depth, active jobs with progress, loaded models)."
    )


# The schema of a vector list is kept shallow on purpose: a client that validates structured
# content with a generic JSON Schema validator would otherwise check every one of the
# 768,000 numbers of a 2,000 x 384 result (seconds in the Python SDK). The bridge checks
# the numbers itself (count, width, finite) before anything is returned.
Vectors = Annotated[
    list[list[float]],
    WithJsonSchema({
        "type": "array",
        "items": {"type": "array", "description": "one vector (numbers)"},
        "description": "One vector per input text, in input order.",
    }),
]
Matrix = Annotated[
    list[list[float]],
    WithJsonSchema({"type": "array", "items": {"type": "array"}, "description": "Rows of cosine similarities."}),
]


class EmbedOutput(BaseModel):
    encoding: Literal["float", "base64"] = Field(description="Which field holds the vectors.")
    embeddings: Vectors | None = None
    embeddings_base64: str | None = Field(
        default=None, description="encoding=base64: little-endian float32, count x dimensions, rows in input order."
    )
    model: str
    dimensions: int
    count: int
    hosts: list[str] = Field(description="Hosts that computed the vectors.")
    truncated: int = Field(description="Texts cut at the model's maximum length.")
    seconds: float


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


class Match(BaseModel):
    index: int
    score: float
    text: str


class SimilarityOutput(BaseModel):
    mode: Literal["pairs", "query", "matrix"]
    model: str
    scores: list[float] | None = Field(default=None, description="pairs: cosine of texts[i] and texts_b[i].")
    matches: list[Match] | None = Field(default=None, description="query: best documents first.")
    matrix: Matrix | None = Field(default=None, description="matrix: cosine of every pair of texts.")
    hosts: list[str]
    seconds: float


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


# --------------------------------------------------------------------------- vectors in a result


MIB = 1024 * 1024


def vectors_json_bytes(vectors: Array, encoding: Literal["float", "base64"]) -> int:
    """About how many bytes `vectors` (a [count, dimensions] block) take in a tool result, without
    serialising them all.

    Float rows are measured on the first row (every row has the same width, and numbers of
    one model print at about the same length); base64 is exact."""
    if len(vectors) == 0:
        return 2
    count, width = vectors.shape
    if encoding == "base64":
        return 4 * math.ceil(count * width * 4 / 3)
    return count * (len(json.dumps(vectors[0].tolist(), separators=(",", ":"))) + 1) + 1


def choose_encoding(
    vectors: Array, asked: Literal["auto", "float", "base64"], budget_mib: float
) -> Literal["float", "base64"]:
    """The encoding to return `vectors` in, or a ToolError if the result cannot fit the budget.

    A result over the budget would not just be slow: MCP clients on the TypeScript SDK drop
    the whole stdio connection on a message over 10 MiB. `auto` gives numbers when they fit
    and the 4x smaller base64 blob when they do not."""
    budget = int(budget_mib * MIB)
    chosen: Literal["float", "base64"] = asked if asked != "auto" else (
        "float" if vectors_json_bytes(vectors, "float") <= budget else "base64"
    )
    size = vectors_json_bytes(vectors, chosen)
    if size <= budget:
        return chosen
    count, width = vectors.shape
    fits = max(0, budget * count // size)
    advice = [f"send at most {fits} texts per call" if fits else "send fewer texts"]
    if chosen == "float":
        advice.insert(0, "use encoding=auto or base64 (4x smaller)")
    advice.append("ask for fewer `dimensions`")
    raise ToolError(
        f"the result would be {size / MIB:.1f} MiB ({count} x {width} vectors as {chosen}), over "
        f"this bridge's limit of {budget_mib:g} MiB per tool result (limits.maxResultMB; MCP clients built on the "
        f"TypeScript SDK close a stdio connection on a message over 10 MiB). What to do: {', or '.join(advice)}."
    )


def embed_output(result: EmbedResult, asked: Literal["auto", "float", "base64"], budget_mib: float) -> EmbedOutput:
    """gpu_embed's result: the vectors as numbers or as one base64 blob (straight from the block's bytes)."""
    chosen = choose_encoding(result.block.array, asked, budget_mib)
    out = EmbedOutput(
        encoding=chosen, model=result.model, dimensions=result.dimensions, count=result.count,
        hosts=result.hosts, truncated=result.truncated, seconds=round(result.seconds, 3),
    )
    if chosen == "base64":
        out.embeddings_base64 = result.block.base64()
    else:
        out.embeddings = result.embeddings
    return out
