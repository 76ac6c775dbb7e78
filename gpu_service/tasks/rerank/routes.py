"""The reranking routes: Cohere's and Jina's `POST /v1/rerank`, and text-embeddings-inference's `POST /rerank`.

Both (and Cohere's v2, routes_v2.py) score (query, document) pairs with the same cross-encoder through the same batcher
(`Reranker.rerank`, service.py); they differ only in their request and response shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

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
from gpu_service.http.serve import ERRORS, serve
from gpu_service.runtime.result import Result
from gpu_service.tasks.rerank.engine import relevance
from gpu_service.tasks.rerank.service import Ranking, Reranker

router = APIRouter()

Answer = Callable[[Result[Ranking]], Response]


async def ranked(request: Request, query: str, documents: list[str], answer: Answer, **options: Any) -> Response:
    """Serve a rerank request (every shape's): score the pairs, answer with `answer`."""
    return await serve(request, lambda state: state.service_of("rerank", Reranker).rerank(query, documents, **options),
                       answer)


@router.post(routes.RERANK, response_model=RerankResponse, response_model_exclude_none=True, responses=ERRORS)
async def rerank(body: RerankRequest, request: Request) -> Response:
    """Cohere's and Jina's shape: the `top_n` best documents, `relevance_score` in [0, 1]."""
    documents = body.texts()

    def answer(result: Result[Ranking]) -> Response:
        scores = relevance(result.value.logits)
        results = [
            RerankResult(
                index=i,
                relevance_score=scores[i],
                document=RerankDocument(text=documents[i]) if body.return_documents else None,
            )
            for i in result.value.order[: body.top_n]
        ]
        response = RerankResponse(results=results, model=result.model, usage=RerankUsage(total_tokens=result.tokens),
                                  truncated=result.truncated)
        return JSONResponse(response.model_dump(exclude_none=True))

    return await ranked(request, body.query, documents, answer, model=body.model)


@router.post(routes.TEI_RERANK, response_model=list[TEIRerankHit], response_model_exclude_none=True, responses=ERRORS)
async def tei_rerank(body: TEIRerankRequest, request: Request) -> Response:
    """text-embeddings-inference's shape: every text, best first; `raw_scores` gives the logits."""

    def answer(result: Result[Ranking]) -> Response:
        logits = result.value.logits
        scores = logits if body.raw_scores else relevance(logits)
        hits = [TEIRerankHit(index=i, score=scores[i], text=body.texts[i] if body.return_text else None)
                for i in result.value.order]
        return JSONResponse([hit.model_dump(exclude_none=True) for hit in hits],
                            headers={"x-truncated": str(result.truncated)})

    return await ranked(request, body.query, body.texts, answer, model=body.model, field="texts",
                        truncate=body.truncate)
