"""What the runtime needs to know of a task: the `Task` each `gpu_service/tasks/<task>/` folder exports
and `gpu_service.tasks.TASKS` lists. The runtime builds from these (engines, services, routes, the
defaults to warm, `/info`), so it imports no task: adding one is a folder and a line in `TASKS`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fastapi import APIRouter

    from gpu_service.models.engine import Engine
    from gpu_service.models.registry import ModelKey
    from gpu_service.models.resolve import ResolvedModel
    from gpu_service.runtime.state import ServiceState
    from gpu_service.settings import Settings


@dataclass(frozen=True)
class Hardware:
    """What an engine is built for: the device, and how to run on it."""

    device: Any
    """The torch device."""
    half_precision: bool
    """GPU_FP16, resolved for the device (device.use_half_precision)."""
    cpu_threads: int | None
    """GPU_CPU_THREADS."""


EngineBuilder = Callable[["ModelKey", "ResolvedModel", Hardware], "Engine"]
"""Builds a task's engine for one model (blocking, on a loader thread; imports its heavy code there)."""

Resolver = Callable[[str, "Settings"], "ResolvedModel"]
"""Where a task's model named so is (blocking, no weights loaded): for a task whose models are not
transformers-style directories (a Piper voice is an `.onnx` file); None: `models.resolve.resolve`."""

DefaultKey = Callable[["ServiceState", str], "ModelKey"]
"""The key of the operator's default model of a task (BERTScore: with its layer)."""


@runtime_checkable
class Closable(Protocol):
    """A task's service that holds something to stop when the service shuts down (processes, threads)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Task:
    """One task of the service: its kind of model, how its engines and its service are built, and its routes."""

    kind: str
    """The kind of model that serves it (ModelKey.kind, /info `models[].kind`, a job's kind)."""
    default_variable: str
    """The variable that names its default model (MODEL_EMBED); the operator's defaults are allowed and warmed."""
    engine: EngineBuilder
    routers: Sequence[APIRouter]
    service: Callable[[ServiceState], object]
    """Builds what its routes call (with the state's registry, jobs and settings); the state builds it once."""
    capabilities: tuple[str, ...] = ()
    """The names it is listed under in /info `capabilities` (embed: embed and similarity); empty: its kind."""
    default_key: DefaultKey | None = None
    """None: `registry.key(kind, name)`."""
    body_limits: Callable[[Settings], dict[str, tuple[int, str]]] | None = None
    resolve: Resolver | None = None
    """How its models are found (Resolver); None: the service's own resolution."""
    directory_models: Callable[[Path], dict[str, str]] | None = None
    """The models of its own kind a folder of GPU_MODEL_DIRS holds, name -> path (a Piper voice is a
    `<name>.onnx` file), listed in /info beside the transformers folders; None: those only."""
    """Paths whose request bodies may exceed GPU_MAX_BODY_BYTES: path -> (largest, the variable that sets it)."""

    @property
    def capability_names(self) -> tuple[str, ...]:
        return self.capabilities or (self.kind,)
