"""Model-aware routing: which hosts may serve a call, by the model it names, best first.

A call needs a task and, optionally, a model (the one it names, or the bridge's `models` default).
Each host that serves the task falls in one tier for it:

- `warm`: the model is loaded there (a gpu-service host's /info says so), or it is the one model an
  openai/tei host is configured with (`model`), or the call names none and the host has a default;
- `allowed`: the host may load it (its allowlist, or GPU_MODEL_DIRS, names it): the first call loads it
  once (the service loads each model single-flight), later calls find it warm;
- `unknown`: for a call that names a model, a host that has not described itself yet (no /info read:
  just started, or a 0.3.0 service), or an openai/tei host without a configured `model` (the name is
  passed through; the server decides). A call that names none is `warm` on such hosts (their default);
- a task some releases of the service lack (`LISTED_ONLY`: speech synthesis, which 0.4.0 has not) goes
  only to a gpu-service host whose /info lists it: one not described yet, or that does not list it, is
  not a candidate for it;
- none: the host cannot serve it (not in its allowlist, a different configured `model`, or a default
  that failed to load there: degraded for that model and task only), or it refused the model with a 403
  since its /info was last read (a host not described yet learns the bridge so, one call at a time). It
  is never sent the call.

The pool picks among the usable hosts of the best tier present, so a warm host is preferred and an
allowed one takes over when none is. A host lacking one model stays healthy for the rest: it is only
left out of the calls that need that model. A call no host can serve fails at once, naming which
hosts have which models and what to configure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gpu_protocol.capabilities import TaskModels, same_model
from mcp_bridge.pool.views import ServedModels
from mcp_bridge.protocols import HOST_TYPES, Task

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host

Tier = Literal["warm", "allowed", "unknown"]
TIERS: tuple[Tier, ...] = ("warm", "allowed", "unknown")
"""Best first."""

LISTED_ONLY: frozenset[Task] = frozenset({"speak"})
"""Tasks a gpu-service host serves only when its /info lists them (added without a protocol version of their
own: a 0.4.0 host speaks protocol 2 too, and has no speech synthesis)."""

CONFIGURE_HINT = (
    "to serve it on more hosts, allow it there (the service's ALLOWED_MODELS, or its folder in GPU_MODEL_DIRS) "
    "or set an openai/tei host's `model` to it; or name a model one of these hosts serves"
)


@dataclass(frozen=True)
class Need:
    """What one call needs of a host: a task, and the model it names (None: each host's default)."""

    task: Task
    model: str | None = None


def task_models(host: Host, task: Task) -> TaskModels | None:
    """What a described gpu-service host says it has for `task`; None until it has said."""
    capabilities = host.described.capabilities
    return capabilities.get(task) if capabilities is not None else None


def tier(host: Host, need: Need) -> Tier | None:
    """How well `host` can serve `need`; None when it cannot."""
    if not host.can_serve(need.task):
        return None
    if need.model and host.described.refuses(need.task, need.model):
        return None
    if not host.protocol.versioned:
        return _fixed_tier(host.config.model, need.model)
    models = task_models(host, need.task)
    if models is None:
        if need.task in LISTED_ONLY:
            return None
        return "unknown" if need.model else "warm"  # its default, as every host's
    name = need.model or models.default
    if name is None or models.lacks(name):
        return None
    if models.has_loaded(name):
        return "warm"
    return "allowed" if models.serves(name) else None


def _fixed_tier(configured: str | None, wanted: str | None) -> Tier | None:
    """An openai/tei host serves exactly its configured `model`; without one, whatever the server has."""
    if wanted is None:
        return "warm"
    if configured is None:
        return "unknown"
    return "warm" if same_model(configured, wanted) else None


def candidates(hosts: Iterable[Host], need: Need) -> list[Host]:
    """The hosts that may serve `need`, in any order."""
    return [h for h in hosts if tier(h, need) is not None]


def best(hosts: list[Host], need: Need) -> list[Host]:
    """Those of `hosts` in the best tier any of them is in (all of them when they share one)."""
    tiers = {h.name: tier(h, need) for h in hosts}
    for level in TIERS:
        found = [h for h in hosts if tiers[h.name] == level]
        if found:
            return found
    return []


def served_models(host: Host) -> list[ServedModels]:
    """Per task, the models `host` serves, as gpu_status, gpu_info and `--check` show them."""
    if not host.protocol.versioned:
        model = host.config.model
        both: tuple[Task, ...] = ("embed", "rerank")
        tasks = [t for t in both if host.can_serve(t)]
        return [
            ServedModels(task=t, default=model, loaded=[model] if model else [], allowed=[model] if model else "*",
                         source="configured")
            for t in tasks
        ]
    capabilities = host.described.capabilities or {}
    return [
        ServedModels(task=task, default=m.default, loaded=list(m.loaded), allowed=m.allowed, failed=list(m.failed),
                     source="host")
        for task, m in capabilities.items()
        if m.default or m.loaded or m.allowed
    ]


def _what_host_has(host: Host, task: Task) -> str:
    """One host's models for `task`, in words."""
    if not host.can_serve(task):
        return f"{host.name}: a {host.protocol.type} host, no {task}"
    refused = sorted(model for (refused_task, _), model in host.described.refused.items() if refused_task == task)
    return _models_in_words(host, task) + (f"; refused {', '.join(refused)}" if refused else "")


def _models_in_words(host: Host, task: Task) -> str:
    if not host.protocol.versioned:
        configured = host.config.model
        return f"{host.name}: {configured} (configured)" if configured else f"{host.name}: any name (no `model` set)"
    models = task_models(host, task)
    if models is None and host.described.capabilities is not None:
        return f"{host.name}: its /info lists no {task} (a release without it)"
    if models is None:
        return f"{host.name}: not described yet (no /info read)"
    allowed = "any" if models.allowed == "*" else ", ".join(models.allowed) or "none"
    words = f"{host.name}: default {models.default or 'none'}; loaded {', '.join(models.loaded) or 'none'}"
    failed = f"; failed to load {', '.join(models.failed)}" if models.failed else ""
    return f"{words}{failed}; allows {allowed}"


def _wanted(need: Need) -> str:
    return f"model {need.model!r}" if need.model else "its default model"


def no_type_serves(hosts: list[Host], task: Task) -> str:
    """Why no configured host can serve `task` at all: what each configured type serves instead."""
    by_words: dict[str, list[str]] = {}
    for kind in dict.fromkeys(h.protocol.type for h in hosts):
        by_words.setdefault(HOST_TYPES[kind].serves, []).append(kind)
    serve = "; ".join(f"{'/'.join(kinds)} hosts serve {words}" for words, kinds in by_words.items())
    hints = {"rerank": "; an openai or tei host that also serves a reranker needs rerank: true",
             "transcribe": "; add a gpu-service host (it transcribes with MODEL_TRANSCRIBE set), or set "
             "transcribe: true on an openai host that serves /v1/audio/transcriptions (speaches, vLLM)",
             "speak": "; add a gpu-service host that speaks (MODEL_SPEAK set, a release after 0.4.0), or set "
             "speak: true on an openai host that serves /v1/audio/speech (speaches, Kokoro-FastAPI)"}
    return f"no configured host can serve {task} ({serve}{hints.get(task, '')})"


def cannot_serve(hosts: list[Host], need: Need) -> str:
    """Why no host can serve `need`: what each host has, and what to configure."""
    have = "; ".join(_what_host_has(h, need.task) for h in hosts)
    return f"no host serves {need.task} with {_wanted(need)} ({have}); {CONFIGURE_HINT}"


def note(hosts: list[Host], need: Need) -> str | None:
    """For a failed call: which hosts it was limited to by its model, and what the others have;
    None when the model left no host out."""
    able = [h for h in hosts if h.can_serve(need.task)]
    left_out = [h for h in able if tier(h, need) is None]
    if not left_out:
        return None
    serving = ", ".join(h.name for h in able if h not in left_out) or "none"
    others = "; ".join(_what_host_has(h, need.task) for h in left_out)
    return f"{_wanted(need)} is served by {serving} only (the others: {others}); {CONFIGURE_HINT}"
