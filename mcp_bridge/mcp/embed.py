"""gpu_embed: the tool, its output schema, and how a vector result is sized and encoded.

A result over the bridge's budget would not just be slow: MCP clients on the TypeScript SDK
drop the whole stdio connection on a message over 10 MiB, so `gpu_embed` chooses numbers or
the 4x smaller base64 blob by the result's size, measured without serialising it.

No `from __future__ import annotations` here: the SDK reads the tool's signature at registration,
and its types are built from the bridge's limits.
"""

import json
import math
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, WithJsonSchema

from gpu_protocol.embed import EmbedRequest
from mcp_bridge.client.results import EmbedResult
from mcp_bridge.mcp.errors import tool_request
from mcp_bridge.mcp.tools import READ_ONLY, HostName, Model, Tools, progress_reporter, result
from mcp_bridge.protocols.vectors import Array

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


def embed_summary(out: EmbedOutput) -> str:
    field = "`embeddings_base64`, little-endian float32" if out.encoding == "base64" else "`embeddings`"
    return (
        f"Embedded {out.count} texts with {out.model} into {out.dimensions}-dimensional vectors on "
        f"{', '.join(out.hosts)} in {out.seconds:.2f}s"
        + (f"; {out.truncated} texts were truncated" if out.truncated else "")
        + f". The vectors are in the structured content (field {field}, in input order)."
    )


def register(server: MCPServer, tools: Tools) -> None:
    limits = tools.limits
    Texts = Annotated[list[Annotated[str, tools.text_limit]], tools.batch_limit]

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
        host: HostName = None,
        encoding: Annotated[Literal["auto", "float", "base64"], Field(
            description="float: lists of numbers. base64: one little-endian float32 blob (4x smaller, exact; "
            f"for programs, not for reading). auto: float when the result fits in {limits.maxResultMB:g} MiB, "
            "else base64. The result's `encoding` says which was used.")] = "auto",
    ) -> Annotated[CallToolResult, EmbedOutput]:
        request = tool_request(EmbedRequest, limits, texts=texts, model=model, normalize=normalize, dimensions=dimensions)
        embedded = await tools.guarded(tools.gpu.embed_request(request, host=host, progress=progress_reporter(ctx)))
        out = embed_output(embedded, encoding, limits.maxResultMB)
        return result(embed_summary(out), out)
