"""Ray Serve: the same FastAPI app, one copy per replica, behind Ray's HTTP proxy.

    serve run deploy/ray/serve_config.yaml          # or: serve run gpu_service.ray_app:app

Each replica builds its own app from the environment (`settings_from_env()`, the variables of
`gpu-service`) and batches its own requests, so a replica takes many requests at once
(`max_ongoing_requests`; Ray's default of 5 would starve the batcher).

Readiness is honest:
- a replica's start-up returns only once its default models are loaded, so Ray routes nothing to
  a replica that is still loading;
- a replica whose default model failed to load fails its health check, so the deployment fails
  (Ray retries the replica, then reports DEPLOY_FAILED) instead of serving without the model;
- `/health` through the proxy answers for the deployment: 503 "starting" until all the replicas
  of the first deployment run, then 200 ("degraded" with Ray's reason while Ray reports the
  deployment unhealthy, since the replicas that run still serve).

Every answer carries `x-replica`: the Ray replica that served it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Deployment
from ray.serve.schema import ServeStatus

from gpu_protocol.status import ServiceStatus
from gpu_service.app import create_app, settings_from_env

DEPLOYMENT_NAME = "gpu-service"
REPLICA_HEADER = "x-replica"
STATUS_CACHE_S = 1.0
"""How long one answer of the Serve controller is reused by `/health` (probes come every few seconds)."""

SERVING = ("HEALTHY", "UPSCALING", "DOWNSCALING", "UPDATING")
"""Deployment statuses in which a deployment that has run serves normally: scaling and rolling
updates keep the running replicas serving."""

DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "name": DEPLOYMENT_NAME,
    # Our batcher merges concurrent requests; Ray's default of 5 ongoing requests would starve it.
    "max_ongoing_requests": 256,
    "autoscaling_config": {
        "min_replicas": 1,
        "max_replicas": 4,
        # A replica with 64 requests in flight already batches well; past that, add one.
        "target_ongoing_requests": 64,
        "upscale_delay_s": 10,
        "downscale_delay_s": 120,
    },
    # Longer than the service's own drain (GPU_DRAIN_TIMEOUT, 30 s by default), so Ray never kills
    # a replica whose requests are still finishing.
    "graceful_shutdown_timeout_s": 45,
    "health_check_period_s": 5,
    "ray_actor_options": {"num_cpus": 1},
}
"""The deployment's defaults; `deploy/ray/serve_config.yaml` sets the GPU (`num_gpus: 1`)."""


class ReplicaHeader:
    """ASGI middleware: every answer says which replica served it (`x-replica`)."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def _replica_counts(deployment: Any) -> tuple[int, int]:
    """(running, wanted) replicas of a deployment's status overview."""
    states = {str(getattr(state, "value", state)): count for state, count in deployment.replica_states.items()}
    return states.get("RUNNING", 0), sum(count for state, count in states.items() if state != "STOPPING")


class DeploymentHealth:
    """The `/health` of the Serve deployment this replica belongs to (see the module's docstring).

    A replica that starts while no replica of its deployment runs belongs to a first deployment:
    it says "starting" until Ray reports the deployment healthy once. A replica that joins a
    running deployment (a replacement, a scale-up, a rolling update) never holds it back."""

    def __init__(self, app_name: str, deployment: str) -> None:
        self.app_name = app_name
        self.deployment = deployment
        self.started = False
        self._cached: tuple[float, tuple[ServiceStatus, list[str]]] | None = None

    async def begin(self) -> None:
        """Called as this replica starts, before it serves."""
        overview = await self._overview()
        self.started = overview is not None and _replica_counts(overview)[0] > 0

    async def _overview(self) -> Any | None:
        status: ServeStatus = await asyncio.to_thread(serve.status)
        application = status.applications.get(self.app_name)
        return None if application is None else application.deployments.get(self.deployment)

    async def __call__(self) -> tuple[ServiceStatus, list[str]]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > STATUS_CACHE_S:
            self._cached = (now, await self._evaluate())
        return self._cached[1]

    async def _evaluate(self) -> tuple[ServiceStatus, list[str]]:
        try:
            overview = await self._overview()
        except Exception as exc:  # noqa: BLE001 - this replica still serves; say why the rest is unknown
            return "degraded", [f"cannot reach the Ray Serve controller: {type(exc).__name__}"]
        if overview is None:
            return "degraded", [f"Ray Serve does not list deployment {self.deployment!r} of {self.app_name!r}"]
        status = str(getattr(overview.status, "value", overview.status))
        running, wanted = _replica_counts(overview)
        counts = f"{running} of {wanted} replicas running"
        reason = f"{counts}; Ray Serve: {overview.message}" if overview.message else counts
        if not self.started:
            if status in SERVING and status != "UPDATING":
                self.started = True
            else:
                return "starting", [reason]
        if status in SERVING:
            return "ok", []
        return "degraded", [f"deployment {status}: {reason}"]


def build_app(replica: str, group_health: DeploymentHealth) -> FastAPI:
    """The service's app for one replica: models loaded before start-up returns, `x-replica` on
    every answer, and `/health` for the whole deployment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as `gpu-service` does: no downloads by surprise
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app = create_app(settings_from_env(), warm_before_serving=True, group_health=group_health)
    app.add_middleware(ReplicaHeader, replica=replica)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await group_health.begin()  # before the models load: who else runs as this replica starts
        async with original(app):
            yield

    app.router.lifespan_context = lifespan
    return app


class GpuServiceReplica:
    """One replica of the GPU service (the deployment is `GpuService`, below)."""

    def __init__(self) -> None:
        context = serve.get_replica_context()
        self.replica = str(context.replica_tag)
        self.group_health = DeploymentHealth(context.app_name, context.deployment)

    def __serve_build_asgi_app__(self) -> FastAPI:
        self.fastapi_app = build_app(self.replica, self.group_health)
        return self.fastapi_app

    async def check_health(self) -> None:
        """Ray stops routing to (and restarts) a replica whose check fails; the first check, right
        after start-up, decides whether the replica starts at all."""
        state = self.fastapi_app.state.service
        status, problems = state.health()
        if status != "ok":
            raise RuntimeError(f"gpu-service replica is {status}: {'; '.join(problems) or 'not serving'}")


GpuService: Deployment = serve.deployment(**DEPLOYMENT_OPTIONS)(serve.ingress()(GpuServiceReplica))
"""The deployment: `GpuService.options(num_replicas=2, ...)` to change its settings in code."""

app = GpuService.bind()
"""The application: `serve run gpu_service.ray_app:app`, or `import_path` in a Serve config."""

__all__ = ["DEPLOYMENT_NAME", "DEPLOYMENT_OPTIONS", "GpuService", "app", "build_app"]
