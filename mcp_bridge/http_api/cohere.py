"""Cohere's v2 rerank, `POST /v2/rerank` (what `cohere.ClientV2.rerank` sends), over the pool: the request
becomes the pool's wire rerank request (the one `/v1/rerank` and `gpu_rerank` send the hosts), and the
merged ranking comes back in v2's shape, `{id, results: [{index, relevance_score}], meta}`."""

from __future__ import annotations

import uuid

from gpu_protocol.rerank import (
    RerankRequest,
    RerankV2Request,
    RerankV2Response,
    RerankV2Result,
    truncation_warning,
    v2_meta,
)
from mcp_bridge.client.results import RerankOutcome

NOT_APPLIED = ("max_tokens_per_doc is not applied by the bridge: each host cuts a (query, document) pair at its "
               "model's maximum length")


def wire_request(asked: RerankV2Request) -> RerankRequest:
    """What the hosts are sent for a v2 request (every document scored; the bridge keeps the `top_n` best)."""
    return RerankRequest(model=asked.model, query=asked.query, documents=list(asked.documents), top_n=asked.top_n)


def v2_answer(asked: RerankV2Request, outcome: RerankOutcome, request_id: str | None) -> RerankV2Response:
    """The merged ranking in v2's shape; `meta.warnings` says what was not done as asked."""
    ranking = outcome.response
    warnings = [NOT_APPLIED] if asked.max_tokens_per_doc is not None else []
    warnings += truncation_warning(ranking.truncated)
    return RerankV2Response(
        id=request_id or str(uuid.uuid4()),
        results=[RerankV2Result(index=r.index, relevance_score=r.relevance_score) for r in ranking.results],
        meta=v2_meta(ranking.usage.total_tokens, warnings),
    )
