"""Cohere's v2 rerank, `POST /v2/rerank` (what `cohere.ClientV2.rerank` sends): the same cross-encoder and
batcher as `/v1/rerank` (routes.py), in v2's shape: string documents, `max_tokens_per_doc`, and an
answer of `{id, results: [{index, relevance_score}], meta}`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gpu_protocol import routes
from gpu_protocol.rerank import RerankV2Request, RerankV2Response, RerankV2Result, truncation_warning, v2_meta
from gpu_service.http.serve import ERRORS, timing_headers
from gpu_service.tasks.rerank.engine import relevance
from gpu_service.tasks.rerank.routes import scored

router = APIRouter()


@router.post(routes.RERANK_V2, response_model=RerankV2Response, response_model_exclude_none=True, responses=ERRORS)
async def rerank_v2(body: RerankV2Request, request: Request) -> JSONResponse:
    """Cohere's v2 shape: the `top_n` best documents, `relevance_score` in [0, 1]; pairs cut at the model's
    maximum are counted in `meta.warnings`."""
    result = await scored(request, body.query, body.documents, model=body.model, doc_tokens=body.max_tokens_per_doc)
    scores = relevance(result.logits)
    response = RerankV2Response(
        id=request.headers.get(routes.REQUEST_ID_HEADER) or str(uuid.uuid4()),
        results=[RerankV2Result(index=i, relevance_score=scores[i]) for i in result.order[: body.top_n]],
        meta=v2_meta(result.tokens, truncation_warning(result.truncated)),
    )
    return JSONResponse(response.model_dump(exclude_none=True), headers=timing_headers(result.timing))
