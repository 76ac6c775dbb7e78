"""The reranking routes: Cohere's and Jina's `POST /v1/rerank`, and text-embeddings-inference's `POST /rerank`.

Both (and Cohere's v2, routes_v2.py) score (query, document) pairs with the same cross-encoder through the same batcher
(`Reranker.rerank`, service.py); they differ only in their request and response shapes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gpu_protocol import routes
from gpu_protocol.rerank import (
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    TEIRerankHit,
    TEIRerankRequest,
)
from gpu_service.http.serve import ERRORS, cancellable, observe, ready_service, timing_headers
from gpu_service.tasks.rerank.engine import relevance
from gpu_service.tasks.rerank.service import Reranked, Reranker

router = APIRouter()


async def scored(request: Request, query: str, documents: list[str], **options: Any) -> Reranked:
    state = ready_service(request)
    result = await cancellable(request, state.service_of("rerank", Reranker).rerank(query, documents, **options))
    observe(request, result.timing)
    return result


@router.post(routes.RERANK, response_model=RerankResponse, response_model_exclude_none=True, responses=ERRORS)
async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
    """Cohere's and Jina's shape: the `top_n` best documents, `relevance_score` in [0, 1]."""
    documents = body.texts()
    result = await scored(request, body.query, documents, model=body.model)
    scores = relevance(result.logits)
    results = [
        RerankResult(
            index=i,
            relevance_score=scores[i],
            document=RerankDocument(text=documents[i]) if body.return_documents else None,
        )
        for i in result.order[: body.top_n]
    ]
    response = RerankResponse(
        results=results, model=result.model, usage=RerankUsage(total_tokens=result.tokens), truncated=result.truncated
    )
    return JSONResponse(response.model_dump(exclude_none=True), headers=timing_headers(result.timing))


@router.post(routes.TEI_RERANK, response_model=list[TEIRerankHit], response_model_exclude_none=True, responses=ERRORS)
async def tei_rerank(body: TEIRerankRequest, request: Request) -> JSONResponse:
    """text-embeddings-inference's shape: every text, best first; `raw_scores` gives the logits."""
    result = await scored(request, body.query, body.texts, model=body.model, field="texts", truncate=body.truncate)
    scores = result.logits if body.raw_scores else relevance(result.logits)
    hits = [
        TEIRerankHit(index=i, score=scores[i], text=body.texts[i] if body.return_text else None) for i in result.order
    ]
    headers = {**timing_headers(result.timing), "x-truncated": str(result.truncated)}
    return JSONResponse([hit.model_dump(exclude_none=True) for hit in hits], headers=headers)
