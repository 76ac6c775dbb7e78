"""text-embeddings-inference hosts (`tei`), in TEI's native API: `POST /embed` (`{"inputs": [...]}` ->
a list of vectors) and `GET /health`; similarity is computed in the bridge. A TEI serving a reranker
(configured `rerank: true`) is asked `POST /rerank`, which scores every text."""

from __future__ import annotations

import httpx

from gpu_protocol import routes
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.rerank import RerankRequest, RerankResponse, RerankResult, RerankUsage, TEIRerankHit
from mcp_bridge.protocols.answers import BadResponse, check_rerank, host_answer, parse_json
from mcp_bridge.protocols.base import HttpCall
from mcp_bridge.protocols.embeddings_only import EmbeddingsOnly
from mcp_bridge.protocols.exchange import RERANK, Exchanges
from mcp_bridge.protocols.vectors import VectorBlock


class TEIProtocol(EmbeddingsOnly):
    type = "tei"

    def health_call(self) -> HttpCall:
        return HttpCall("GET", routes.TEI_HEALTH)

    def exchanges(self) -> Exchanges:
        return super().exchanges().add(RERANK, self.rerank_call, self.parse_rerank)

    def embed_call(self, request: EmbedRequest) -> HttpCall:
        # TEI serves one model and takes no model name; it normalises when asked (the default).
        return HttpCall("POST", routes.TEI_EMBED, {"inputs": list(request.texts), "normalize": request.normalize})

    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        return self.checked_block(parse_json(response), request, self.model_name(None))

    def rerank_call(self, request: RerankRequest) -> HttpCall:
        body = {"query": request.query, "texts": request.texts(), "raw_scores": False, "return_text": False,
                "truncate": True}
        return HttpCall("POST", routes.TEI_RERANK, body)

    def parse_rerank(self, response: httpx.Response, request: RerankRequest) -> RerankResponse:
        body = parse_json(response)
        if not isinstance(body, list):
            raise BadResponse("a TEI /rerank answer is a list of {index, score}")
        with host_answer():
            hits = [TEIRerankHit.model_validate(hit) for hit in body]
        results = [RerankResult(index=hit.index, relevance_score=hit.score) for hit in hits]
        answer = RerankResponse(results=results, model=self.model_name(None),
                                usage=RerankUsage(total_tokens=0), truncated=0)
        return check_rerank(answer, request)
