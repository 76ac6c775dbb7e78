"""The FastAPI app, assembled: middleware, error handlers, lifespan and the route modules.

`create_app(settings)` builds a fresh app; the `gpu-service` command serves one with
uvicorn. Start-up warms the default models in the background, so `/health` answers
at once (503 "starting" until the defaults are loaded), or, for Ray Serve
(`gpu_service/ray_app.py`), before start-up returns; shutdown drains in-flight
requests before models are released (lifespan.py). The routes live in `routes/`, one
module per route family; a new one is one more `include(...)` line below.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from gpu_service import __version__
from gpu_service.http import handlers, status
from gpu_service.http.middleware.api_key import ApiKeyMiddleware
from gpu_service.http.middleware.body_limit import BodySizeLimitMiddleware
from gpu_service.http.middleware.protocol_version import ProtocolVersionMiddleware
from gpu_service.http.middleware.request_counter import RequestCounter
from gpu_service.http.serve import GroupHealth
from gpu_service.runtime.lifespan import lifespan
from gpu_service.settings import Settings
from gpu_service.tasks.bertscore import routes as bertscore
from gpu_service.tasks.embed import routes as embed
from gpu_service.tasks.embed import similarity_routes as similarity
from gpu_service.tasks.rerank import routes as rerank
from gpu_service.tasks.rerank import routes_v2 as rerank_v2
from gpu_service.tasks.transcribe import routes as audio


def create_app(settings: Settings | None = None, *, warm_before_serving: bool = False,
               group_health: GroupHealth | None = None) -> FastAPI:
    """The service's app. `warm_before_serving`: start-up returns only once the default models are
    loaded (for a platform that routes to a replica as soon as start-up returns, like Ray Serve);
    otherwise they load in the background and `/health` says "starting" meanwhile. `group_health`:
    see `GroupHealth`."""
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="openclaw-gpu-bridge GPU service",
        version=__version__,
        lifespan=lifespan(settings, warm_before_serving=warm_before_serving),
        description="Embeddings, BERTScore and reranking on this machine's GPU, batched across requests.",
    )
    app.state.group_health = group_health
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.limits.max_body_bytes, path_limits=audio.body_limits(settings.speech))
    app.add_middleware(RequestCounter)
    app.add_middleware(ProtocolVersionMiddleware)  # outermost: every answer states the version
    handlers.install(app)
    include(app, status.router)
    include(app, embed.router)
    include(app, similarity.router)
    include(app, bertscore.router)
    include(app, rerank.router)
    include(app, rerank_v2.router)
    include(app, audio.router)
    return app


def include(app: FastAPI, router: APIRouter) -> None:
    """`router`'s routes as the app's own, as `app.routes` lists them (FastAPI's `include_router`
    nests a router as one opaque entry there). Routers here have no prefix or dependencies."""
    app.router.routes.extend(router.routes)


__all__ = ["GroupHealth", "create_app"]
