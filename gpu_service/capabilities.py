"""What this service can do per task (its `/info` `capabilities`): the default, loaded, allowed and failed models,
and the other names each of them answers to."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from gpu_protocol.capabilities import TaskModels
from gpu_service.models.resolve import ModelPolicy
from gpu_service.runtime.state import ServiceState
from gpu_service.runtime.task import Task
from gpu_service.settings import Settings


def _directory_models(settings: Settings, tasks: Iterable[Task] = ()) -> dict[str, str]:
    """The models in GPU_MODEL_DIRS: folder name (a request may name them so, or by path) -> path, and those
    a task finds there in its own way (`Task.directory_models`: a Piper voice's `<name>.onnx`)."""
    found: dict[str, str] = {}
    for directory in settings.model_dirs:
        root = Path(directory)
        if root.is_dir():
            for task in tasks:
                if task.directory_models is not None:
                    found.update(task.directory_models(root))
            found.update((d.name, str(d)) for d in sorted(root.iterdir()) if (d / "config.json").is_file())
    return found


def _other_names(policy: ModelPolicy, directories: dict[str, str], listed: Iterable[str]) -> dict[str, list[str]]:
    """For each model in `listed`, the other names this service takes for it (none: left out)."""
    table: dict[str, list[str]] = {}
    for name in dict.fromkeys(n.split("@L")[0] for n in listed):
        others = policy.other_names(name) + ([directories[name]] if name in directories else [])
        if others:
            table[name] = others
    return table


def _failed(state: ServiceState, settings: Settings) -> dict[str, list[str]]:
    """Per model kind, the defaults that failed to load and are still missing (why /health says degraded)."""
    loaded = {m.key for m in state.registry.loaded()}
    failed: dict[str, list[str]] = {}
    for kind, failure in state.default_failures.items():
        if failure.key is None or failure.key not in loaded:
            failed.setdefault(kind, []).append(settings.default_models.get(kind) or "")
    return failed


def capabilities(state: ServiceState, settings: Settings) -> dict[str, TaskModels]:
    """Per task (each of the state's tasks under each of its capability names), the models a request may
    name here. The allowlist is the service's, the same for every task (a name of the wrong kind is
    refused when it loads)."""
    policy = state.registry.policy
    described = policy.describe()
    directories = _directory_models(settings, state.tasks.values())
    allowed: list[str] | Literal["*"] = "*" if described == "*" else sorted({*described, *directories})
    loaded: dict[str, list[str]] = {}
    speakers: dict[str, dict[str, list[str]]] = {}
    for model in state.registry.loaded():
        loaded.setdefault(model.key.kind, []).append(model.key.label)
        if named := model.engine.details().speakers:
            speakers.setdefault(model.key.kind, {})[model.key.label] = named
    failed = _failed(state, settings)
    table: dict[str, TaskModels] = {}
    for kind, task in state.tasks.items():
        default = settings.default_models.get(kind)
        kind_loaded = sorted(loaded.get(kind, []))
        kind_failed = [name for name in failed.get(kind, []) if name]
        listed = [*([default] if default else []), *kind_loaded, *([] if allowed == "*" else allowed), *kind_failed]
        models = TaskModels(default=default, loaded=kind_loaded, allowed=allowed, failed=kind_failed,
                            names=_other_names(policy, directories, listed), speakers=speakers.get(kind, {}))
        table.update((name, models) for name in task.capability_names)
    return table
