"""What this service can do per task (its `/info` `capabilities`): the default, loaded and allowed models."""

from __future__ import annotations

from typing import Literal

from gpu_protocol.capabilities import CAPABILITY_TASKS, TaskModels
from gpu_protocol.status import ModelKind
from gpu_service.settings import Settings
from gpu_service.state import ServiceState

MODEL_KIND: dict[str, ModelKind] = {"embed": "embed", "similarity": "embed", "bertscore": "bertscore", "rerank": "rerank",
              "transcribe": "transcribe"}
"""Task -> the kind of model that serves it; a task not here has no models on this service."""


def capabilities(state: ServiceState, settings: Settings) -> dict[str, TaskModels]:
    """Per task, the models a request may name here. The allowlist is the service's, the same for every
    task that has models (a name of the wrong kind is refused when it loads)."""
    described = state.registry.policy.describe()
    allowed: list[str] | Literal["*"] = "*" if described == "*" else list(described)
    loaded: dict[str, list[str]] = {}
    for model in state.registry.loaded():
        loaded.setdefault(model.key.kind, []).append(model.key.label)
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
        )
    return table
