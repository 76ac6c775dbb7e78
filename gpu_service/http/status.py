"""The service's views of itself: `/health`, `/info`, `/status`, `/metrics`, and `POST /cancel/{id}`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gpu_protocol import routes
from gpu_protocol.status import SERVING_STATUSES, HealthResponse, InfoResponse, ServiceStatus, StatusResponse
from gpu_protocol.versions import PROTOCOL_VERSION
from gpu_service.capabilities import capabilities
from gpu_service.http.serve import GroupHealth, service
from gpu_service.runtime.metrics import CONTENT_TYPE
from gpu_service.runtime.state import ServiceState

router = APIRouter()

_SEVERITY: dict[ServiceStatus, int] = {"ok": 0, "degraded": 1, "starting": 2, "draining": 2}


async def _health(state: ServiceState, group_health: GroupHealth | None) -> tuple[ServiceStatus, list[str]]:
    status, problems = state.health()
    if group_health is None or status not in SERVING_STATUSES:
        return status, problems
    group_status, group_problems = await group_health()
    worse = group_status if _SEVERITY[group_status] > _SEVERITY[status] else status
    return worse, [*problems, *group_problems]


@router.get(routes.HEALTH, response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(request: Request) -> JSONResponse:
    state = service(request)
    status, problems = await _health(state, request.app.state.group_health)
    body = HealthResponse(status=status, device=str(state.device), problems=problems)
    # degraded answers 200: the host serves the models it has (the bridge keeps using it).
    return JSONResponse(body.model_dump(), status_code=200 if status in SERVING_STATUSES else 503)


@router.get(routes.INFO, response_model=InfoResponse)
async def info(request: Request) -> InfoResponse:
    from gpu_service.runtime import device as devices

    state = service(request)
    settings = state.settings
    total, free = devices.vram_mb(state.device)
    versions = devices.runtime_versions()
    return InfoResponse(
        device=str(state.device),
        device_name=devices.device_name(state.device),
        vram_total_mb=total,
        vram_free_mb=free,
        half_precision=devices.use_half_precision(settings.fp16, state.device),
        default_models={kind: settings.default_models.get(kind) for kind in state.tasks},
        allowed_models=state.registry.policy.describe(),
        models=[m.info() for m in state.registry.loaded()],
        limits={
            "max_texts": settings.limits.max_texts,
            "max_text_chars": settings.limits.max_text_chars,
            "max_body_bytes": settings.limits.max_body_bytes,
            "max_queue": settings.max_queue,
            "max_batch_tokens": state.batch.max_tokens,
            "max_batch_size": state.batch.max_size,
            "batch_overhead_tokens": state.batch.overhead_tokens,
        },
        torch_version=versions["torch_version"] or "",
        cuda_version=versions["cuda_version"],
        rocm_version=versions["rocm_version"],
        protocol_version=PROTOCOL_VERSION,
        capabilities=capabilities(state, settings),
    )


@router.get(routes.STATUS, response_model=StatusResponse)
async def status(request: Request) -> StatusResponse:
    state = service(request)
    status, problems = state.health()
    return StatusResponse(
        status=status,
        problems=problems,
        uptime_s=round(time.monotonic() - state.started, 3),
        queue_depth=state.registry.queue_depth(),
        active_jobs=[job.status() for job in state.jobs.active()],
        models=[m.info() for m in state.registry.loaded()],
        batches={m.key.label: m.scheduler.stats.batches for m in state.registry.loaded()},
        queued_by_class=state.registry.queued_by_class(),
    )


@router.post(routes.CANCEL)
async def cancel(request_id: str, request: Request) -> dict[str, bool]:
    """Cancel the request sent with this `X-Request-Id`; its unstarted work is dropped."""
    work = service(request).cancellable.get(request_id)
    if work is not None:
        work.cancel()
    return {"cancelled": work is not None}


@router.get(routes.METRICS, response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(service(request).metrics.render(), media_type=CONTENT_TYPE)
