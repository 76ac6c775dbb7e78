"""Embeddings: our `POST /embed`, and OpenAI's `POST /v1/embeddings`, one code path (`Embedder.embed`, service.py); OpenAI's
`GET /v1/models` lists the embedding models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gpu_protocol import routes
from gpu_protocol.embed import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIModel,
    OpenAIModelList,
)
from gpu_service.errors import Unprocessable
from gpu_service.http.serve import ERRORS, serve, service
from gpu_service.runtime.result import Result
from gpu_service.runtime.state import ServiceState
from gpu_service.tasks.embed.responses import VectorJSONResponse, embed_response, openai_response
from gpu_service.tasks.embed.service import Embedder, Embedding

router = APIRouter()


def _embedder(state: ServiceState) -> Embedder:
    return state.service_of("embed", Embedder)


@router.post(routes.EMBED, response_model=EmbedResponse, response_model_exclude_none=True, responses=ERRORS)
async def embed(body: EmbedRequest, request: Request) -> Response:
    def answer(result: Result[Embedding]) -> Response:
        return VectorJSONResponse(embed_response(result.value.vectors.numpy(), model=result.model,
                                                 truncated=result.truncated, tokens=result.tokens,
                                                 encoding_format=body.encoding_format))

    return await serve(request, lambda state: _embedder(state).embed(
        body.texts, model=body.model, normalize=body.normalize, dimensions=body.dimensions,
        prompt_name=body.prompt_name, prompt=body.prompt, input_type=body.input_type,
    ), answer)


@router.post(routes.OPENAI_EMBEDDINGS, response_model=OpenAIEmbeddingResponse, responses=ERRORS)
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise Unprocessable("input must be a non-empty string or a non-empty list of non-empty strings")

    def answer(result: Result[Embedding]) -> Response:
        return VectorJSONResponse(openai_response(result.value.vectors.numpy(), model=result.model,
                                                  tokens=result.tokens, encoding_format=body.encoding_format))

    return await serve(request, lambda state: _embedder(state).embed(
        texts, field="input", model=body.model, dimensions=body.dimensions, input_type=body.input_type,
    ), answer)


@router.get(routes.OPENAI_MODELS, response_model=OpenAIModelList)
async def openai_models(request: Request) -> OpenAIModelList:
    """The default embedding model and every loaded one, in OpenAI's shape."""
    state = service(request)
    names = [state.settings.default_models["embed"]]
    names += [m.key.label for m in state.registry.loaded() if m.key.kind == "embed" and m.key.label not in names]
    return OpenAIModelList(data=[OpenAIModel(id=name) for name in names])
