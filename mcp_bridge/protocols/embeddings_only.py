"""What hosts that only embed (OpenAI-compatible servers, TEI) share: similarity computed in the bridge
from their vectors, and the bridge's own normalisation and Matryoshka truncation."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import httpx
import numpy as np

from gpu_protocol.codec import as_block, check_block
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from mcp_bridge.protocols.answers import host_answer
from mcp_bridge.protocols.base import HostProtocol, HttpCall, Task
from mcp_bridge.protocols.exchange import EMBED, SIMILARITY, Exchanges
from mcp_bridge.protocols.gpu_service import check_similarity
from mcp_bridge.protocols.vectors import VectorBlock, renormalised, similarity_from_block


class EmbeddingsOnly(HostProtocol):
    tasks: ClassVar[frozenset[Task]] = frozenset({"embed"})
    serves = "embeddings only"
    default_auth = "bearer"

    def exchanges(self) -> Exchanges:
        """Embeddings, and similarity from them; a subclass adds what its hosts serve besides."""
        return (Exchanges()
                .add(EMBED, self.embed_call, self.parse_embed)
                .add(SIMILARITY, self.similarity_call, self.parse_similarity))

    @abstractmethod
    def embed_call(self, request: EmbedRequest) -> HttpCall: ...

    @abstractmethod
    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        """`request.texts`' vectors, checked: one per text, one width (`request.dimensions` when
        given), every number finite."""

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
