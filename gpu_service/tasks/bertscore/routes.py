"""BERTScore: `POST /bertscore`, and `POST /bertscore/idf` (document counts that add up across hosts)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gpu_protocol import routes
from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreRequest,
    BertScoreResponse,
)
from gpu_service.http.serve import ERRORS, serve
from gpu_service.runtime.state import ServiceState
from gpu_service.tasks.bertscore.service import BertScorer

router = APIRouter()


def _scorer(state: ServiceState) -> BertScorer:
    return state.service_of("bertscore", BertScorer)


@router.post(routes.BERTSCORE, response_model=BertScoreResponse, responses=ERRORS)
async def bertscore(body: BertScoreRequest, request: Request) -> Response:
    return await serve(request, lambda state: _scorer(state).bertscore(body),
                       lambda result: JSONResponse(result.value.model_dump()), endpoint=routes.BERTSCORE)


@router.post(routes.BERTSCORE_IDF, response_model=BertScoreIdfResponse, responses=ERRORS)
async def bertscore_idf(body: BertScoreIdfRequest, request: Request) -> Response:
    """Document frequencies for idf over a chunk of sentences; merged counts go back in `idf_counts`."""
    return await serve(request, lambda state: _scorer(state).bertscore_idf(body),
                       lambda result: JSONResponse(result.value.model_dump()), endpoint=routes.BERTSCORE_IDF)
