"""`POST /similarity`: cosine similarities computed on this host, so no vector travels."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gpu_protocol import routes
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from gpu_service.http.serve import ERRORS, cancellable, observe, ready_service, timing_headers
from gpu_service.tasks.embed.service import Embedder

router = APIRouter()


@router.post(routes.SIMILARITY, response_model=SimilarityResponse, response_model_exclude_none=True, responses=ERRORS)
async def similarity(body: SimilarityRequest, request: Request) -> JSONResponse:
    state = ready_service(request)
    result, timing = await cancellable(request, state.service_of("embed", Embedder).similarity(body))
    observe(request, timing, routes.SIMILARITY)
    return JSONResponse(result.model_dump(exclude_none=True), headers=timing_headers(timing))
