"""What this service can do per task (its `/info` `capabilities`): the default, loaded, allowed and failed models."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from gpu_protocol.capabilities import CAPABILITY_TASKS, TaskModels
from gpu_protocol.status import ModelKind
from gpu_service.runtime.state import ServiceState
from gpu_service.settings import Settings

MODEL_KIND: dict[str, ModelKind] = {"embed": "embed", "similarity": "embed", "bertscore": "bertscore", "rerank": "rerank",
              "transcribe": "transcribe"}
"""Task -> the kind of model that serves it; a task not here has no models on this service."""


def _directory_models(settings: Settings) -> list[str]:
    """The models in GPU_MODEL_DIRS, by folder name (a request may name them so)."""
    found: list[str] = []
    for directory in settings.model_dirs:
        root = Path(directory)
        if root.is_dir():
            found += [d.name for d in sorted(root.iterdir()) if (d / "config.json").is_file()]
    return found


def _failed(state: ServiceState, settings: Settings) -> dict[str, list[str]]:
    """Per model kind, the defaults that failed to load and are still missing (why /health says degraded)."""
    loaded = {m.key for m in state.registry.loaded()}
    failed: dict[str, list[str]] = {}
    for kind, failure in state.default_failures.items():
        if failure.key is None or failure.key not in loaded:
            failed.setdefault(kind, []).append(settings.default_models.get(kind) or "")
    return failed


def capabilities(state: ServiceState, settings: Settings) -> dict[str, TaskModels]:
    """Per task, the models a request may name here. The allowlist is the service's, the same for every
    task that has models (a name of the wrong kind is refused when it loads)."""
    described = state.registry.policy.describe()
    allowed: list[str] | Literal["*"] = (
        "*" if described == "*" else sorted({*described, *_directory_models(settings)})
    )
    loaded: dict[str, list[str]] = {}
    for model in state.registry.loaded():
        loaded.setdefault(model.key.kind, []).append(model.key.label)
    failed = _failed(state, settings)
    table: dict[str, TaskModels] = {}
    for task in CAPABILITY_TASKS:
        kind = MODEL_KIND.get(task)
        if kind is None:
            table[task] = TaskModels()
            continue
        table[task] = TaskModels(
            default=settings.default_models.get(kind),
            loaded=sorted(loaded.get(kind, [])),
            allowed=allowed,
            failed=[name for name in failed.get(kind, []) if name],
        )
    return table
