"""The FastAPI app: routes, error mapping, start-up and draining.

`create_app(settings)` builds a fresh app; the `gpu-service` command serves one with
uvicorn. Start-up warms the default models in the background, so `/health` answers
at once (503 "starting" until the defaults are loaded); shutdown drains in-flight
requests before models are released.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpu_service import __version__
from gpu_service.errors import ClientClosed, ServiceError, Unavailable, Unprocessable
from gpu_service.inference import Embedded, Inference, Timing
from gpu_service.jobs import JobTracker
from gpu_service.metrics import CONTENT_TYPE, Metrics, RequestCounter
from gpu_service.models import ModelKey, ModelRegistry
from gpu_service.schema import (
    BertScoreRequest,
    BertScoreResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIUsage,
    SimilarityRequest,
    SimilarityResponse,
    StatusResponse,
    encode_float32_rows,
)
from gpu_service.security import ApiKeyMiddleware, BodySizeLimitMiddleware
from gpu_service.settings import Settings

log = logging.getLogger("gpu_service")
T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 500, 503, 504)
}


def _engine_factories(device: Any, settings: Settings) -> dict[str, Callable[[ModelKey, Any], Any]]:
    from gpu_service.bertscore import BertScoreEngine
    from gpu_service.embedding import EmbeddingEngine

    return {
        "embed": lambda key, resolved: EmbeddingEngine(resolved, device, fp16=settings.fp16),
        "bertscore": lambda key, resolved: BertScoreEngine(resolved, key.num_layers, device),
    }


def _memory_budget(settings: Settings, device: Any) -> int | None:
    from gpu_service.device import vram_mb

    if settings.model_memory_mb is not None:
        return int(settings.model_memory_mb * 2**20)
    total, _free = vram_mb(device)
    return int(total * 0.8 * 2**20) if total else None


class ServiceState:
    """Everything the routes share, built in the lifespan (after torch picks a device)."""

    def __init__(self, settings: Settings) -> None:
        from gpu_service import device as devices

        self.settings = settings
        self.started = time.monotonic()
        self.phase = "starting"
        self.warm_error: str | None = None
        self.device = devices.select_device(settings.torch_device)
        if settings.max_batch_size is None:
            settings = dataclasses.replace(settings, max_batch_size=256 if self.device.type == "cuda" else 64)
            self.settings = settings
        self.metrics = Metrics()
        self.jobs = JobTracker()
        self.registry = ModelRegistry(
            settings,
            _engine_factories(self.device, settings),
            device_slots=threading.BoundedSemaphore(settings.max_concurrent),
            memory_budget_bytes=_memory_budget(settings, self.device),
            is_oom=devices.is_out_of_memory,
            after_oom=lambda: devices.release_cached_memory(self.device),
            observer=self.metrics.observe_batch,
            before_batch=devices.cpu_thread_policy(settings.cpu_threads) if self.device.type == "cpu" else None,
        )
        self.inference = Inference(settings, self.registry, self.jobs)
        self.cancellable: dict[str, asyncio.Future[Any]] = {}
        self.metrics.watch(
            self.registry.queue_depth,
            lambda: [(m.key.label, m.key.kind, float(m.engine.memory_bytes)) for m in self.registry.loaded()],
        )

    def default_keys(self) -> list[ModelKey]:
        from gpu_service.bertscore import default_layers
        from gpu_service.resolve import canonical_name

        bert_name = canonical_name(self.settings.model_bertscore)
        return [
            self.registry.key("embed", self.settings.model_embed),
            self.registry.key("bertscore", bert_name, default_layers(bert_name)),
        ]

    async def warm(self) -> None:
        try:
            for key in self.default_keys():
                await self.registry.warm(key)
        except Exception as exc:  # noqa: BLE001 - the service still serves other models
            self.warm_error = getattr(exc, "detail", None) or str(exc)
            log.error("warming the default models failed: %s", self.warm_error)
        if self.phase == "starting":
            self.phase = "ok"
            log.info("ready on %s", self.device)

    def require_ready(self) -> None:
        if self.phase != "ok":
            raise Unavailable(f"service is {self.phase}; retry shortly or use another host", retry_after_s=2)

    async def drain(self) -> None:
        self.phase = "draining"
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while len(self.jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.registry.close()


REQUEST_ID_HEADER = "x-request-id"


async def _cancellable(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its unstarted batches) if the client goes away or
    asks: a disconnect, or `POST /cancel/{id}` naming this request's `X-Request-Id`.

    The explicit cancel exists because a client's HTTP library may keep the connection
    open after it abandons a request, and proxies may hide the disconnect."""
    task = asyncio.ensure_future(work)
    cancellable: dict[str, asyncio.Future[Any]] = request.app.state.service.cancellable
    request_id = request.headers.get(REQUEST_ID_HEADER)
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
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings)
        app.state.service = state
        warm_task = asyncio.create_task(state.warm()) if settings.warm_defaults else None
        if warm_task is None:
            state.phase = "ok"
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
        description="Embeddings and BERTScore on this machine's GPU, batched across requests.",
    )
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestCounter)

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

    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def health(request: Request) -> JSONResponse:
        state = service(request)
        body = HealthResponse(status=state.phase, device=str(state.device))  # type: ignore[arg-type]
        return JSONResponse(body.model_dump(), status_code=200 if state.phase == "ok" else 503)

    @app.get("/info", response_model=InfoResponse)
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
            default_models={"embed": settings.model_embed, "bertscore": settings.model_bertscore},
            allowed_models=state.registry.policy.describe(),  # type: ignore[arg-type]
            models=[m.info() for m in state.registry.loaded()],
            limits={
                "max_texts": settings.limits.max_texts,
                "max_text_chars": settings.limits.max_text_chars,
                "max_body_bytes": settings.limits.max_body_bytes,
                "max_queue": settings.max_queue,
            },
            torch_version=versions["torch_version"] or "",
            cuda_version=versions["cuda_version"],
            rocm_version=versions["rocm_version"],
        )

    @app.get("/status", response_model=StatusResponse)
    async def status(request: Request) -> StatusResponse:
        state = service(request)
        return StatusResponse(
            status=state.phase,  # type: ignore[arg-type]
            uptime_s=round(time.monotonic() - state.started, 3),
            queue_depth=state.registry.queue_depth(),
            active_jobs=[job.status() for job in state.jobs.active()],
            models=[m.info() for m in state.registry.loaded()],
            batches={m.key.label: m.scheduler.stats.batches for m in state.registry.loaded()},
        )

    @app.post("/cancel/{request_id}")
    async def cancel(request_id: str, request: Request) -> dict[str, bool]:
        """Cancel the request sent with this `X-Request-Id`; its unstarted work is dropped."""
        task = service(request).cancellable.get(request_id)
        if task is not None:
            task.cancel()
        return {"cancelled": task is not None}

    @app.get("/metrics", response_class=Response)
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

    @app.post("/embed", response_model=EmbedResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def embed(body: EmbedRequest, request: Request) -> JSONResponse:
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
        vectors = result.vectors
        response = EmbedResponse(
            model=result.model, dimensions=int(vectors.shape[1]), count=int(vectors.shape[0]), truncated=result.truncated,
            tokens=result.tokens,
        )
        if body.encoding_format == "base64":
            response.embeddings_base64 = encode_float32_rows(vectors.numpy().astype("<f4").tobytes())
        else:
            response.embeddings = vectors.tolist()
        return JSONResponse(response.model_dump(exclude_none=True), headers=_timing_headers(result.timing))

    @app.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse, responses=_ERRORS)
    async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> JSONResponse:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not t.strip() for t in texts):
            raise Unprocessable("input must be a non-empty string or a non-empty list of non-empty strings")
        result = await run_embed(request, texts, model=body.model, dimensions=body.dimensions, input_type=body.input_type)
        rows = result.vectors.numpy().astype("<f4")
        data = [
            OpenAIEmbedding(
                index=i,
                embedding=encode_float32_rows(row.tobytes()) if body.encoding_format == "base64" else row.tolist(),
            )
            for i, row in enumerate(rows)
        ]
        response = OpenAIEmbeddingResponse(
            data=data, model=result.model, usage=OpenAIUsage(prompt_tokens=result.tokens, total_tokens=result.tokens)
        )
        return JSONResponse(response.model_dump(), headers=_timing_headers(result.timing))

    @app.post("/similarity", response_model=SimilarityResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def similarity(body: SimilarityRequest, request: Request) -> JSONResponse:
        state = service(request)
        state.require_ready()
        result, timing = await _cancellable(request, state.inference.similarity(body))
        observe(state, "/similarity", timing)
        return JSONResponse(result.model_dump(exclude_none=True), headers=_timing_headers(timing))

    @app.post("/bertscore", response_model=BertScoreResponse, responses=_ERRORS)
    async def bertscore(body: BertScoreRequest, request: Request) -> JSONResponse:
        state = service(request)
        state.require_ready()
        result, timing = await _cancellable(request, state.inference.bertscore(body))
        observe(state, "/bertscore", timing)
        return JSONResponse(result.model_dump(), headers=_timing_headers(timing))

    return app


__all__ = ["create_app"]
