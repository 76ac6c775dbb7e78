"""The model registry: load on demand, once, within a memory budget.

- Single flight: concurrent first requests for a model share one load; a failed
  load is reported to every waiter and forgotten, so the next request tries again.
- A load that takes longer than `model_load_timeout_s` answers its waiters with a
  clear 504 instead of hanging them (the load itself goes on and is kept if it works).
- A memory budget with least-recently-used eviction of idle models; the configured
  defaults are never evicted, and no model is evicted while a request uses it.
- Each loaded model owns a preprocessing thread (its tokenizer lives there), taking its work in
  class order (scheduling/prep.py), and a batch scheduler with its own model thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gpu_protocol.priority import PRIORITIES
from gpu_protocol.status import ModelInfo
from gpu_service.errors import DeadlineExceeded, ModelLoadFailed, ServiceError
from gpu_service.models.engine import Engine
from gpu_service.models.resolve import ModelPolicy, ResolvedModel, resolve
from gpu_service.models.whisper_catalog import check_kind
from gpu_service.scheduling.batching import BatchObserver, BatchScheduler
from gpu_service.scheduling.lanes import Lane
from gpu_service.scheduling.prep import PrepQueue
from gpu_service.settings import BatchLimits, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True)
class ModelKey:
    kind: str
    name: str
    num_layers: int | None = None

    @property
    def label(self) -> str:
        return self.name if self.num_layers is None else f"{self.name}@L{self.num_layers}"


EngineFactory = Callable[[ModelKey, ResolvedModel], Engine]
"""Builds the engine of a key's task (blocking, runs on a loader thread)."""
Resolver = Callable[[str, Settings], ResolvedModel]
"""Where a kind's model named so is, for a kind that does not use `resolve` (blocking, no weights loaded)."""


@dataclass
class LoadedModel:
    key: ModelKey
    engine: Engine
    scheduler: BatchScheduler[Any, Any]
    prep: PrepQueue
    default: bool
    in_use: int = 0
    last_used: float = field(default_factory=time.monotonic)

    def engine_as(self, kind: type[E]) -> E:
        """The engine, as the type its task built (the registry builds a key's kind of engine)."""
        if not isinstance(self.engine, kind):
            raise TypeError(f"model {self.key.label!r} has a {type(self.engine).__name__}, not a {kind.__name__}")
        return self.engine

    async def prepare(self, fn: Callable[..., T], *args: Any, lane: Lane) -> T:
        """Run `fn` on this model's preprocessing thread (the only thread that touches its tokenizer), in
        `lane`'s turn: interactive preparation never waits behind batch preparation that has not started."""
        return await self.prep.run(lane, fn, *args)

    def info(self) -> ModelInfo:
        details = self.engine.details()
        return ModelInfo(
            name=self.key.label,
            kind=self.key.kind,
            memory_mb=round(self.engine.memory_bytes / 2**20, 1),
            in_use=self.in_use,
            default=self.default,
            last_used_s_ago=round(time.monotonic() - self.last_used, 1),
            dimensions=details.dimensions,
            max_tokens=details.max_tokens,
            prompts=details.prompts,
            speakers=details.speakers,
        )

    async def close(self) -> None:
        await self.scheduler.close()
        self.prep.close()
        self.engine.close()


class ModelRegistry:
    def __init__(
        self,
        settings: Settings,
        factories: dict[str, EngineFactory],
        *,
        batch: BatchLimits,
        device_slots: threading.Semaphore,
        memory_budget_bytes: int | None,
        is_oom: Callable[[BaseException], bool] = lambda exc: False,
        after_oom: Callable[[], None] = lambda: None,
        observer: BatchObserver | None = None,
        resolvers: dict[str, Resolver] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = ModelPolicy(settings)
        self._factories = factories
        self.batch = batch
        self._slots = device_slots
        self.memory_budget_bytes = memory_budget_bytes
        self._is_oom = is_oom
        self._after_oom = after_oom
        self._observer = observer
        self._resolvers = resolvers or {}
        self._loaded: dict[ModelKey, LoadedModel] = {}
        self._loading: dict[ModelKey, asyncio.Task[LoadedModel]] = {}
        self.evictions = 0
        self.defaults: set[ModelKey] = set()

    # ------------------------------------------------------------------ queries

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def queue_depth(self) -> int:
        return sum(m.scheduler.queued for m in self._loaded.values())

    def queued_by_class(self) -> dict[str, int]:
        """Items queued per priority class, over all models (/status)."""
        totals: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
        for model in self._loaded.values():
            for priority, queued in model.scheduler.queued_by_class().items():
                totals[priority] += queued
        return totals

    def memory_bytes(self) -> int:
        return sum(int(m.engine.memory_bytes) for m in self._loaded.values())

    # ------------------------------------------------------------------ use

    def key(self, kind: str, name: str, num_layers: int | None = None) -> ModelKey:
        """Check the name against the policy (no disk, no network) and build its key."""
        self.policy.check(name)
        return ModelKey(kind, self.policy.canonical(name), num_layers)

    @asynccontextmanager
    async def use(self, key: ModelKey) -> AsyncIterator[LoadedModel]:
        """The loaded model for `key`, loading it if needed; it cannot be evicted while held."""
        model = await self._get(key)
        model.in_use += 1
        try:
            yield model
        finally:
            model.in_use -= 1
            model.last_used = time.monotonic()

    async def warm(self, key: ModelKey) -> None:
        self.defaults.add(key)
        model = await self._get(key)
        model.default = True

    async def _get(self, key: ModelKey) -> LoadedModel:
        model = self._loaded.get(key)
        if model is not None:
            return model
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key), name=f"load-{key.label}")
            self._loading[key] = task
            task.add_done_callback(lambda _task: self._forget_load(key))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.model_load_timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"model {key.label!r} is still loading after {self.settings.model_load_timeout_s:.0f}s "
                "(GPU_MODEL_LOAD_TIMEOUT); retry later"
            ) from None

    def _forget_load(self, key: ModelKey) -> None:
        self._loading.pop(key, None)

    async def _load(self, key: ModelKey) -> LoadedModel:
        started = time.perf_counter()
        factory = self._factories[key.kind]

        def build() -> Engine:
            resolved = self._resolvers.get(key.kind, resolve)(key.name, self.settings)
            check_kind(key.kind, key.name, resolved.source)  # before any weights load
            log.info("loading %s model %s from %s (%s)", key.kind, key.label, resolved.source, resolved.origin)
            return factory(key, resolved)

        try:
            engine = await asyncio.to_thread(build)
        except ServiceError:
            raise
        except Exception as exc:  # noqa: BLE001 - report why, to every waiter
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadFailed(f"model {key.label!r} could not be loaded: {reason[:300]}") from exc
        on_device = engine.concurrency == 1  # else single-item calls on CPU cores, bounded by the engine's own count
        scheduler: BatchScheduler[Any, Any] = BatchScheduler(
            key.label,
            engine.run,
            max_batch_tokens=self.batch.max_tokens,
            max_batch_size=self.batch.max_size if on_device else 1,
            overhead_tokens=self.batch.overhead_tokens,
            padded=engine.padded,
            max_queue=self.settings.max_queue,
            window_s=self.settings.batch_window_ms / 1000,
            device_slots=self._slots if on_device else threading.BoundedSemaphore(engine.concurrency),
            concurrency=engine.concurrency,
            is_oom=self._is_oom,
            after_oom=self._after_oom,
            observer=self._observer,
        )
        scheduler.start()
        model = LoadedModel(
            key=key,
            engine=engine,
            scheduler=scheduler,
            prep=PrepQueue(key.label),
            default=key in self.defaults,
        )
        self._loaded[key] = model
        log.info("loaded %s in %.1fs (%.0f MiB)", key.label, time.perf_counter() - started, engine.memory_bytes / 2**20)
        await self._evict_over_budget(keep=key)
        return model

    async def _evict_over_budget(self, keep: ModelKey) -> None:
        if self.memory_budget_bytes is None:
            return
        while self.memory_bytes() > self.memory_budget_bytes:
            idle = [
                m for m in self._loaded.values()
                if m.key != keep and not m.default and m.in_use == 0 and m.scheduler.queued == 0
            ]
            if not idle:
                log.warning(
                    "loaded models use %.0f MiB, over the %.0f MiB budget, and none is idle to evict",
                    self.memory_bytes() / 2**20, self.memory_budget_bytes / 2**20,
                )
                return
            victim = min(idle, key=lambda m: m.last_used)
            log.info("evicting %s (least recently used) to stay within the memory budget", victim.key.label)
            del self._loaded[victim.key]
            self.evictions += 1
            await victim.close()

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        for model in list(self._loaded.values()):
            await model.close()
        self._loaded.clear()
