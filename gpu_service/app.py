"""The FastAPI app: routes, error mapping, start-up and draining.

`create_app(settings)` builds a fresh app; the `gpu-service` command serves one with
uvicorn. Start-up warms the default models in the background, so `/health` answers
at once (503 "starting" until the defaults are loaded), or, for Ray Serve
(`gpu_service/ray_app.py`), before start-up returns; shutdown drains in-flight
requests before models are released.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpu_protocol import routes
from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreRequest,
    BertScoreResponse,
)
from gpu_protocol.embed import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
)
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from gpu_protocol.status import SERVING_STATUSES, ErrorResponse, HealthResponse, InfoResponse, StatusResponse
from gpu_protocol.validation import validation_message
from gpu_protocol.versions import PROTOCOL_VERSION
from gpu_service import __version__
from gpu_service.capabilities import capabilities
from gpu_service.errors import ClientClosed, ServiceError, Unprocessable
from gpu_service.inference import Embedded, Timing
from gpu_service.metrics import CONTENT_TYPE, RequestCounter
from gpu_service.responses import VectorJSONResponse, embed_body, openai_body
from gpu_service.security import ApiKeyMiddleware, BodySizeLimitMiddleware
from gpu_service.settings import DEFAULT_MODEL_VARIABLES, Settings
from gpu_service.state import ServiceState
from gpu_service.versioning import ProtocolVersionMiddleware

log = logging.getLogger("gpu_service")
T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 500, 503, 504)
}


GroupHealth = Callable[[], Awaitable[tuple[str, list[str]]]]
"""The health of the group of replicas this app serves in (Ray Serve: its deployment), as
(status, problems); `/health` answers the worse of it and this replica's own."""

_SEVERITY = {"ok": 0, "degraded": 1, "starting": 2, "draining": 2}


async def _health(state: ServiceState, group_health: GroupHealth | None) -> tuple[str, list[str]]:
    status, problems = state.health()
    if group_health is None or status not in SERVING_STATUSES:
        return status, problems
    group_status, group_problems = await group_health()
    worse = group_status if _SEVERITY[group_status] > _SEVERITY[status] else status
    return worse, [*problems, *group_problems]


async def _cancellable(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its unstarted batches) if the client goes away or
    asks: a disconnect, or `POST /cancel/{id}` naming this request's `X-Request-Id`.

    The explicit cancel exists because a client's HTTP library may keep the connection
    open after it abandons a request, and proxies may hide the disconnect."""
    task = asyncio.ensure_future(work)
    cancellable: dict[str, asyncio.Future[Any]] = request.app.state.service.cancellable
    request_id = request.headers.get(routes.REQUEST_ID_HEADER)
    if request_id:
        cancellable[request_id] = task

    async def watch() -> None:
        # The body has been read, so the next ASGI message can only be the disconnect:
        # one blocking receive per request (polling is_disconnected() costs far more).
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled():  # the work was cancelled, not this handler: answer instead of crashing
            raise ClientClosed("the client cancelled this request") from None
        raise
    finally:
        watcher.cancel()
        if request_id:
            cancellable.pop(request_id, None)


def _timing_headers(timing: Timing) -> dict[str, str]:
    return {"x-queue-time": f"{timing.queue_s * 1000:.1f}", "x-inference-time": f"{timing.inference_s * 1000:.1f}"}


def _validation_message(exc: RequestValidationError) -> str:
    """The same words the bridge uses for the same mistake (`texts[1] is blank: ...`)."""
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if loc[:1] == ("body",) and len(loc) > 1 and isinstance(loc[1], str):
            loc = loc[1:]  # a field of the body: name the field alone
        errors.append({**err, "loc": loc})
    return "invalid request: " + validation_message(errors)


def create_app(settings: Settings | None = None, *, warm_before_serving: bool = False,
               group_health: GroupHealth | None = None) -> FastAPI:
    """The service's app. `warm_before_serving`: start-up returns only once the default models are
    loaded (for a platform that routes to a replica as soon as start-up returns, like Ray Serve);
    otherwise they load in the background and `/health` says "starting" meanwhile. `group_health`:
    see `GroupHealth`."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings)
        app.state.service = state
        warm_task = None
        if not settings.warm_defaults:
            state.phase = "ok"
        elif warm_before_serving:
            await state.warm()
        else:
            warm_task = asyncio.create_task(state.warm())
        try:
            yield
        finally:
            if warm_task is not None:
                warm_task.cancel()
            await state.drain()

    app = FastAPI(
        title="openclaw-gpu-bridge GPU service",
        version=__version__,
        lifespan=lifespan,
        description="Embeddings, BERTScore and reranking on this machine's GPU, batched across requests.",
    )
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestCounter)
    app.add_middleware(ProtocolVersionMiddleware)  # outermost: every answer states the version

    def service(request: Request) -> ServiceState:
        return request.app.state.service  # type: ignore[no-any-return]

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = ("request body is not valid JSON (malformed, not UTF-8, or nested too deeply); "
                      'send a JSON object such as {"texts": ["..."]}')
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)

    @app.get(routes.HEALTH, response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def health(request: Request) -> JSONResponse:
        state = service(request)
        status, problems = await _health(state, group_health)
        body = HealthResponse(status=status, device=str(state.device), problems=problems)  # type: ignore[arg-type]
        # degraded answers 200: the host serves the models it has (the bridge keeps using it).
        return JSONResponse(body.model_dump(), status_code=200 if status in SERVING_STATUSES else 503)

    @app.get(routes.INFO, response_model=InfoResponse)
    async def info(request: Request) -> InfoResponse:
        from gpu_service import device as devices

        state = service(request)
        total, free = devices.vram_mb(state.device)
        versions = devices.runtime_versions()
        return InfoResponse(
            device=str(state.device),
            device_name=devices.device_name(state.device),
            vram_total_mb=total,
            vram_free_mb=free,
            half_precision=devices.use_half_precision(settings.fp16, state.device),
            default_models={kind: settings.default_models.get(kind) for kind in DEFAULT_MODEL_VARIABLES},
            allowed_models=state.registry.policy.describe(),  # type: ignore[arg-type]
            models=[m.info() for m in state.registry.loaded()],
            limits={
                "max_texts": settings.limits.max_texts,
                "max_text_chars": settings.limits.max_text_chars,
                "max_body_bytes": settings.limits.max_body_bytes,
                "max_queue": settings.max_queue,
                "max_batch_tokens": state.settings.max_batch_tokens or 0,
                "max_batch_size": state.settings.max_batch_size or 0,
                "batch_overhead_tokens": state.settings.batch_overhead_tokens or 0,
            },
            torch_version=versions["torch_version"] or "",
            cuda_version=versions["cuda_version"],
            rocm_version=versions["rocm_version"],
            protocol_version=PROTOCOL_VERSION,
            capabilities=capabilities(state, settings),
        )

    @app.get(routes.STATUS, response_model=StatusResponse)
    async def status(request: Request) -> StatusResponse:
        state = service(request)
        status, problems = state.health()
        return StatusResponse(
            status=status,  # type: ignore[arg-type]
            problems=problems,
            uptime_s=round(time.monotonic() - state.started, 3),
            queue_depth=state.registry.queue_depth(),
            active_jobs=[job.status() for job in state.jobs.active()],
            models=[m.info() for m in state.registry.loaded()],
            batches={m.key.label: m.scheduler.stats.batches for m in state.registry.loaded()},
        )

    @app.post(routes.CANCEL)
    async def cancel(request_id: str, request: Request) -> dict[str, bool]:
        """Cancel the request sent with this `X-Request-Id`; its unstarted work is dropped."""
        task = service(request).cancellable.get(request_id)
        if task is not None:
            task.cancel()
        return {"cancelled": task is not None}

    @app.get(routes.METRICS, response_class=Response)
    async def metrics(request: Request) -> Response:
        return Response(service(request).metrics.render(), media_type=CONTENT_TYPE)

    def observe(state: ServiceState, endpoint: str, timing: Timing) -> None:
        state.metrics.queue_seconds.labels(endpoint).observe(timing.queue_s)
        state.metrics.inference_seconds.labels(endpoint).observe(timing.inference_s)

    async def run_embed(request: Request, texts: list[str], **options: Any) -> Embedded:
        state = service(request)
        state.require_ready()
        result = await _cancellable(request, state.inference.embed(texts, **options))
        observe(state, request.url.path, result.timing)
        return result

    @app.post(routes.EMBED, response_model=EmbedResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def embed(body: EmbedRequest, request: Request) -> Response:
        result = await run_embed(
            request,
            body.texts,
            model=body.model,
            normalize=body.normalize,
            dimensions=body.dimensions,
            prompt_name=body.prompt_name,
            prompt=body.prompt,
            input_type=body.input_type,
        )
        body_out = embed_body(result.vectors.numpy(), model=result.model, truncated=result.truncated,
                              tokens=result.tokens, encoding_format=body.encoding_format)
        return VectorJSONResponse(body_out, headers=_timing_headers(result.timing))

    @app.post(routes.OPENAI_EMBEDDINGS, response_model=OpenAIEmbeddingResponse, responses=_ERRORS)
    async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not t.strip() for t in texts):
            raise Unprocessable("input must be a non-empty string or a non-empty list of non-empty strings")
        result = await run_embed(request, texts, model=body.model, dimensions=body.dimensions,
                                 input_type=body.input_type)
        body_out = openai_body(result.vectors.numpy(), model=result.model, tokens=result.tokens,
                               encoding_format=body.encoding_format)
        return VectorJSONResponse(body_out, headers=_timing_headers(result.timing))

    @app.post(routes.SIMILARITY, response_model=SimilarityResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def similarity(body: SimilarityRequest, request: Request) -> JSONResponse:
        state = service(request)
        state.require_ready()
        result, timing = await _cancellable(request, state.inference.similarity(body))
        observe(state, routes.SIMILARITY, timing)
        return JSONResponse(result.model_dump(exclude_none=True), headers=_timing_headers(timing))

    @app.post(routes.BERTSCORE, response_model=BertScoreResponse, responses=_ERRORS)
    async def bertscore(body: BertScoreRequest, request: Request) -> JSONResponse:
        state = service(request)
        state.require_ready()
        result, timing = await _cancellable(request, state.inference.bertscore(body))
        observe(state, routes.BERTSCORE, timing)
        return JSONResponse(result.model_dump(), headers=_timing_headers(timing))

    @app.post(routes.BERTSCORE_IDF, response_model=BertScoreIdfResponse, responses=_ERRORS)
    async def bertscore_idf(body: BertScoreIdfRequest, request: Request) -> BertScoreIdfResponse:
        """Document frequencies for idf over a chunk of sentences; merged counts go back in `idf_counts`."""
        state = service(request)
        state.require_ready()
        return await _cancellable(request, state.inference.bertscore_idf(body))

    from gpu_service.rerank_routes import router as rerank_router  # here: it uses this module's helpers

    app.include_router(rerank_router)
    return app


__all__ = ["create_app"]
