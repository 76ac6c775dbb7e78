"""Cohere's v2 rerank, `POST /v2/rerank` (what `cohere.ClientV2.rerank` sends): the same cross-encoder and
batcher as `/v1/rerank` (routes.py), in v2's shape: string documents, `max_tokens_per_doc`, and an
answer of `{id, results: [{index, relevance_score}], meta}`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gpu_protocol import routes
from gpu_protocol.rerank import RerankV2Request, RerankV2Response, RerankV2Result, truncation_warning, v2_meta
from gpu_service.http.serve import ERRORS
from gpu_service.runtime.result import Result
from gpu_service.tasks.rerank.engine import relevance
from gpu_service.tasks.rerank.routes import ranked
from gpu_service.tasks.rerank.service import Ranking

router = APIRouter()


@router.post(routes.RERANK_V2, response_model=RerankV2Response, response_model_exclude_none=True, responses=ERRORS)
async def rerank_v2(body: RerankV2Request, request: Request) -> Response:
    """Cohere's v2 shape: the `top_n` best documents, `relevance_score` in [0, 1]; pairs cut at the model's
    maximum are counted in `meta.warnings`."""

    def answer(result: Result[Ranking]) -> Response:
        scores = relevance(result.value.logits)
        response = RerankV2Response(
            id=request.headers.get(routes.REQUEST_ID_HEADER) or str(uuid.uuid4()),
            results=[RerankV2Result(index=i, relevance_score=scores[i]) for i in result.value.order[: body.top_n]],
            meta=v2_meta(result.tokens, truncation_warning(result.truncated)),
        )
        return JSONResponse(response.model_dump(exclude_none=True))

    return await ranked(request, body.query, body.documents, answer, model=body.model,
                        doc_tokens=body.max_tokens_per_doc)
