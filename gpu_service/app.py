"""The FastAPI app, assembled: middleware, error handlers, lifespan and each task's routes.

`create_app(settings)` builds a fresh app serving `gpu_service.tasks.TASKS` (or the tasks it is
given); the `gpu-service` command serves one with uvicorn. Start-up warms the default models in the
background, so `/health` answers at once (503 "starting" until the defaults are loaded), or, for Ray
Serve (`gpu_service/ray_app.py`), before start-up returns; shutdown drains in-flight requests before
models are released (runtime/lifespan.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter, FastAPI

from gpu_service import __version__
from gpu_service.http import handlers, status
from gpu_service.http.middleware.api_key import ApiKeyMiddleware
from gpu_service.http.middleware.body_limit import BodySizeLimitMiddleware
from gpu_service.http.middleware.protocol_version import ProtocolVersionMiddleware
from gpu_service.http.middleware.request_counter import RequestCounter
from gpu_service.http.serve import GroupHealth
from gpu_service.runtime.lifespan import lifespan
from gpu_service.runtime.task import Task
from gpu_service.settings import Settings
from gpu_service.tasks import TASKS, model_variables


def settings_from_env(environ: Mapping[str, str] | None = None, tasks: Sequence[Task] = TASKS) -> Settings:
    """The settings in the environment, with each task's default-model variable."""
    return Settings.from_env(environ, model_variables=model_variables(tuple(tasks)))


def create_app(settings: Settings | None = None, *, warm_before_serving: bool = False,
               group_health: GroupHealth | None = None, tasks: Sequence[Task] = TASKS) -> FastAPI:
    """The service's app. `warm_before_serving`: start-up returns only once the default models are
    loaded (for a platform that routes to a replica as soon as start-up returns, like Ray Serve);
    otherwise they load in the background and `/health` says "starting" meanwhile. `group_health`:
    see `GroupHealth`. `tasks`: what it serves (each task's routes, engines, service, default model)."""
    settings = settings or settings_from_env(tasks=tasks)
    app = FastAPI(
        title="openclaw-gpu-bridge GPU service",
        version=__version__,
        lifespan=lifespan(settings, tasks, warm_before_serving=warm_before_serving),
        description="Embeddings, BERTScore and reranking on this machine's GPU, batched across requests.",
    )
    app.state.group_health = group_health
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.limits.max_body_bytes, path_limits=_body_limits(tasks, settings))
    app.add_middleware(RequestCounter)
    app.add_middleware(ProtocolVersionMiddleware)  # outermost: every answer states the version
    handlers.install(app)
    include(app, status.router)
    for task in tasks:
        for router in task.routers:
            include(app, router)
    return app


def _body_limits(tasks: Sequence[Task], settings: Settings) -> dict[str, tuple[int, str]]:
    """The paths whose bodies may be larger than GPU_MAX_BODY_BYTES (audio uploads), from their tasks."""
    return {path: limit for task in tasks if task.body_limits for path, limit in task.body_limits(settings).items()}


def include(app: FastAPI, router: APIRouter) -> None:
    """`router`'s routes as the app's own, as `app.routes` lists them (FastAPI's `include_router`
    nests a router as one opaque entry there). Routers here have no prefix or dependencies."""
    app.router.routes.extend(router.routes)


__all__ = ["GroupHealth", "create_app", "settings_from_env"]
