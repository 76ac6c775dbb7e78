"""text-embeddings-inference hosts (`tei`), in TEI's native API: `POST /embed` (`{"inputs": [...]}` ->
a list of vectors) and `GET /health`. Embeddings only here; similarity is computed in the bridge.
(TEI's `/rerank` comes with reranking.)"""

from __future__ import annotations

import httpx

from gpu_protocol import routes
from gpu_protocol.embed import EmbedRequest
from mcp_bridge.answers import parse_json
from mcp_bridge.protocols.base import HttpCall
from mcp_bridge.protocols.embeddings_only import EmbeddingsOnly
from mcp_bridge.vectors import VectorBlock


class TEIProtocol(EmbeddingsOnly):
    type = "tei"

    def health_call(self) -> HttpCall:
        return HttpCall("GET", routes.TEI_HEALTH)

    def embed_call(self, request: EmbedRequest) -> HttpCall:
        # TEI serves one model and takes no model name; it normalises when asked (the default).
        return HttpCall("POST", routes.TEI_EMBED, {"inputs": list(request.texts), "normalize": request.normalize})

    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        return self.checked_block(parse_json(response), request, self.config.model or "default")
