"""`/v1` answers built from the `gpu_protocol` models, the documented contract the service's own
`/v1/embeddings` answers with too.

An embeddings answer is built without validation (`model_construct`: its rows come from the pool,
already checked for count, width and finite numbers) and written by pydantic's serializer in one
pass: for 2,000 x 384 floats about a fifth of the CPU of a dict and `json.dumps`. base64 rows come
straight from the block's float32 bytes, never through Python floats.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from starlette.responses import Response

from gpu_protocol.codec import encode_float32_rows
from gpu_protocol.embed import OpenAIEmbedding, OpenAIEmbeddingResponse, OpenAIUsage
from mcp_bridge.client.results import EmbedResult


class ModelResponse(Response):
    """A protocol model as JSON, written by its own serializer (unset fields left out)."""

    media_type = "application/json"

    def render(self, content: OpenAIEmbeddingResponse) -> bytes:
        return content.model_dump_json(exclude_none=True).encode()


def embeddings_answer(result: EmbedResult, encoding: Literal["float", "base64"]) -> OpenAIEmbeddingResponse:
    """OpenAI's embeddings answer for `result`: one row per input, numbers or little-endian float32 base64."""
    vectors: list[list[float]] | list[str]
    if encoding == "base64":
        rows = np.ascontiguousarray(result.block.array, dtype="<f4")
        vectors = [encode_float32_rows(row.tobytes()) for row in rows]
    else:
        vectors = result.embeddings
    data = [OpenAIEmbedding.model_construct(index=i, embedding=vector) for i, vector in enumerate(vectors)]
    usage = OpenAIUsage.model_construct(prompt_tokens=result.tokens, total_tokens=result.tokens)
    return OpenAIEmbeddingResponse.model_construct(data=data, model=result.model, usage=usage)
