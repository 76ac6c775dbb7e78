"""What hosts that only embed (OpenAI-compatible servers, TEI) share: similarity computed in the bridge
from their vectors, and the bridge's own normalisation and Matryoshka truncation."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import numpy as np

from gpu_protocol.codec import as_block, check_block
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from mcp_bridge.protocols.answers import host_answer
from mcp_bridge.protocols.base import HostProtocol, HttpCall, Task
from mcp_bridge.protocols.gpu_service import check_similarity
from mcp_bridge.protocols.vectors import VectorBlock, renormalised, similarity_from_block


class EmbeddingsOnly(HostProtocol):
    tasks: ClassVar[frozenset[Task]] = frozenset({"embed"})
    serves = "embeddings only"
    default_auth = "bearer"

    def model_for(self, request: EmbedRequest) -> str:
        """The model to ask for (and to report when the answer names none)."""
        return self.config.model or request.model or "default"

    def checked_block(self, rows: Any, request: EmbedRequest, model: str) -> VectorBlock:
        """Rows of JSON numbers as a block (float64, as sent), normalised and truncated here as our
        service would (truncation always renormalises), then checked."""
        with host_answer():
            array = as_block(rows, dtype=np.float64)
            if request.normalize or request.dimensions is not None:
                array = renormalised(array, request.dimensions)
            check_block(array, len(request.texts), request.dimensions)
        return VectorBlock(array, model)

    # ------------------------------------------------------------------ similarity, from the host's vectors

    def similarity_call(self, request: SimilarityRequest) -> HttpCall:
        return self.embed_call(_unit_vectors_of(request))

    def parse_similarity(self, response: httpx.Response, request: SimilarityRequest) -> SimilarityResponse:
        answer = similarity_from_block(request, self.parse_embed(response, _unit_vectors_of(request)))
        check_similarity(answer, request)
        return answer


def _unit_vectors_of(request: SimilarityRequest) -> EmbedRequest:
    """The embedding request behind a similarity request: every input, unit length (already validated)."""
    return EmbedRequest.model_construct(texts=request.inputs(), model=request.model, normalize=True)
