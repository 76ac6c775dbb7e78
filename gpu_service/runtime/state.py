"""What the routes share: the device, the model registry, the jobs, and the service's health.

Built in the app's lifespan (after torch picks a device). Start-up warms the operator's
default models; one that fails to load is logged and reported by `/health` as
`degraded` with the reason, and the others still load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gpu_protocol.cancel import Cancellation
from gpu_protocol.status import ServiceStatus
from gpu_service.errors import Unavailable
from gpu_service.models.registry import EngineFactory, ModelKey, ModelRegistry
from gpu_service.runtime.metrics import Metrics
from gpu_service.runtime.task import Closable, EngineBuilder, Hardware, Task
from gpu_service.scheduling.jobs import JobTracker
from gpu_service.settings import Settings

log = logging.getLogger(__name__)

S = TypeVar("S")


def _engine_factories(tasks: Sequence[Task], device: Any, settings: Settings) -> dict[str, EngineFactory]:
    """Each task's engine builder, bound to this device."""
    from gpu_service.runtime.device import use_half_precision

    hardware = Hardware(device, use_half_precision(settings.fp16, device), settings.cpu_threads)

    def bind(build: EngineBuilder) -> EngineFactory:
        return lambda key, resolved: build(key, resolved, hardware)

    return {task.kind: bind(task.engine) for task in tasks}


def _memory_budget(settings: Settings, device: Any) -> int | None:
    from gpu_service.runtime.device import vram_mb

    if settings.model_memory_mb is not None:
        return int(settings.model_memory_mb * 2**20)
    total, _free = vram_mb(device)
    return int(total * 0.8 * 2**20) if total else None


@dataclass
class DefaultFailure:
    key: ModelKey | None
    """None when the default could not even be named (refused, or its layer unknown)."""
    reason: str


class ServiceState:
    """Everything the routes share, built in the lifespan (after torch picks a device)."""

    def __init__(self, settings: Settings, tasks: Sequence[Task]) -> None:
        from gpu_service.runtime import device as devices

        self.settings = settings
        self.tasks = {task.kind: task for task in tasks}
        """The tasks this service serves, by kind (gpu_service.tasks.TASKS unless an app was given others)."""
        self.started = time.monotonic()
        self.phase: ServiceStatus = "starting"
        self.default_failures: dict[str, DefaultFailure] = {}
        self.device = devices.select_device(settings.torch_device)
        if self.device.type == "cpu":
            devices.use_cpu_threads(settings.cpu_threads)
        self.batch = settings.batch_limits(self.device.type, lambda: devices.batch_token_budget(self.device))
        """The batch limits on this device, resolved once (what /info reports)."""
        self.metrics = Metrics()
        self.jobs = JobTracker()
        self.registry = ModelRegistry(
            settings,
            _engine_factories(tasks, self.device, settings),
            batch=self.batch,
            device_slots=threading.BoundedSemaphore(settings.max_concurrent),
            memory_budget_bytes=_memory_budget(settings, self.device),
            is_oom=devices.is_out_of_memory,
            after_oom=lambda: devices.release_cached_memory(self.device),
            observer=self.metrics.observe_batch,
            resolvers={task.kind: task.resolve for task in tasks if task.resolve is not None},
        )
        self.services: dict[str, object] = {task.kind: task.service(self) for task in tasks}
        """Each task's service (what its routes call), by kind."""
        self.cancellable: dict[str, Cancellation] = {}
        """The work of each request that named an X-Request-Id, for `POST /cancel/{id}`."""
        self.metrics.watch(
            self.registry.queue_depth,
            lambda: [(m.key.label, m.key.kind, float(m.engine.memory_bytes)) for m in self.registry.loaded()],
            self.registry.queued_by_class,
        )

    def service_of(self, kind: str, service: type[S]) -> S:
        """The service of the task `kind`, as the type its routes expect."""
        found = self.services.get(kind)
        if not isinstance(found, service):
            raise TypeError(f"task {kind!r} has no {service.__name__} on this service")
        return found

    def default_variable(self, kind: str) -> str:
        return self.tasks[kind].default_variable

    def default_key(self, kind: str, name: str) -> ModelKey:
        default_key = self.tasks[kind].default_key
        return default_key(self, name) if default_key is not None else self.registry.key(kind, name)

    async def warm(self) -> None:
        """Load every default (of the tasks GPU_WARM_DEFAULTS names, where it names some); one that fails is
        logged and reported by /health, the others still load."""
        for kind, name in self.settings.default_models.items():
            if kind not in self.tasks or not self.settings.warms(kind):
                continue
            variable = self.default_variable(kind)
            key: ModelKey | None = None
            try:
                key = self.default_key(kind, name)
                await self.registry.warm(key)
            except Exception as exc:  # noqa: BLE001 - the service still serves the other models
                reason = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
                self.default_failures[kind] = DefaultFailure(key, f"{variable}={name!r} is not loaded: {reason}")
                log.error("default model %s=%r failed to load, serving without it: %s", variable, name, reason)
        if self.phase == "starting":
            self.phase = "ok"
            log.info("ready on %s%s", self.device, " (degraded: see /health)" if self.problems() else "")

    def problems(self) -> list[str]:
        """Why the service is degraded: defaults that failed to load and are still not loaded."""
        loaded = {m.key for m in self.registry.loaded()}
        return [f.reason for f in self.default_failures.values() if f.key is None or f.key not in loaded]

    def health(self) -> tuple[ServiceStatus, list[str]]:
        """ok | degraded (serving, but a default model is missing) | starting | draining, and why."""
        if self.phase != "ok":
            return self.phase, []
        problems = self.problems()
        return ("degraded" if problems else "ok"), problems

    def require_ready(self) -> None:
        if self.phase != "ok":
            raise Unavailable(f"service is {self.phase}; retry shortly or use another host", retry_after_s=2)

    async def drain(self) -> None:
        self.phase = "draining"
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while len(self.jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.registry.close()

    def close(self) -> None:
        """Stop what the tasks' services started (the speech decoder processes); after `drain`."""
        for service in self.services.values():
            if isinstance(service, Closable):
                service.close()
