"""`POST /similarity`: cosine similarities computed on this host, so no vector travels."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gpu_protocol import routes
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from gpu_service.http.serve import ERRORS, serve
from gpu_service.tasks.embed.service import Embedder

router = APIRouter()


@router.post(routes.SIMILARITY, response_model=SimilarityResponse, response_model_exclude_none=True, responses=ERRORS)
async def similarity(body: SimilarityRequest, request: Request) -> Response:
    return await serve(request, lambda state: state.service_of("embed", Embedder).similarity(body),
                       lambda result: JSONResponse(result.value.model_dump(exclude_none=True)),
                       endpoint=routes.SIMILARITY)
