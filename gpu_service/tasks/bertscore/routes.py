"""BERTScore: `POST /bertscore`, and `POST /bertscore/idf` (document counts that add up across hosts)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gpu_protocol import routes
from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreRequest,
    BertScoreResponse,
)
from gpu_service.http.serve import ERRORS, cancellable, observe, ready_service, timing_headers
from gpu_service.tasks.bertscore.service import BertScorer

router = APIRouter()


@router.post(routes.BERTSCORE, response_model=BertScoreResponse, responses=ERRORS)
async def bertscore(body: BertScoreRequest, request: Request) -> JSONResponse:
    state = ready_service(request)
    result, timing = await cancellable(request, state.service_of("bertscore", BertScorer).bertscore(body))
    observe(request, timing, routes.BERTSCORE)
    return JSONResponse(result.model_dump(), headers=timing_headers(timing))


@router.post(routes.BERTSCORE_IDF, response_model=BertScoreIdfResponse, responses=ERRORS)
async def bertscore_idf(body: BertScoreIdfRequest, request: Request) -> BertScoreIdfResponse:
    """Document frequencies for idf over a chunk of sentences; merged counts go back in `idf_counts`."""
    state = ready_service(request)
    return await cancellable(request, state.service_of("bertscore", BertScorer).bertscore_idf(body))
