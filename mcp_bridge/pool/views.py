"""The pool's record of its hosts, as typed views: one host's state and counters, and the whole pool's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

HostState = Literal["healthy", "degraded", "unhealthy", "ejected", "cooling-down"]


class ServedModels(BaseModel):
    """The models one host serves for one task (mcp_bridge.pool.routing decides with them)."""

    task: str
    default: str | None = None
    """What a call naming no model gets there."""
    loaded: list[str] = []
    """Warm: calls naming these go here first."""
    allowed: list[str] | Literal["*"] = []
    """It may load these on first use (`*`: any name, the server decides)."""
    failed: list[str] = []
    """Defaults that failed to load: calls needing them are not sent here (degraded for them only)."""
    source: Literal["host", "configured"]
    """host: from its /info; configured: an openai/tei host's `model` in the bridge's config."""


def models_in_words(rows: list[ServedModels]) -> str:
    """Per task, what a host serves, in one line (gpu_info's summary, `gpu-bridge --check`)."""
    parts = []
    for r in rows:
        loaded = ", ".join(r.loaded) or "none"
        more = [a for a in r.allowed if a not in r.loaded] if r.allowed != "*" else []
        may = "any name" if r.allowed == "*" else (f"{len(more)} more" if more else "nothing more")
        failed = f", failed: {', '.join(r.failed)}" if r.failed else ""
        parts.append(f"{r.task}: default {r.default or 'none'}, loaded {loaded}, may load {may}{failed}")
    return "; ".join(parts) or "not described yet"


class HostView(BaseModel):
    """The pool's record of one host."""

    name: str
    url: str
    type: str
    origin: str | None = None
    """For a host found by DNS discovery: the name of the config entry it came from."""
    state: HostState
    ejected_for_s: float | None
    in_flight: int
    weight: float
    ewma_latency_ms: float | None
    consecutive_failures: int
    ejections: int
    last_error: str | None
    problems: list[str]
    models: list[ServedModels] = []
    """Per task, the models it serves (empty until a gpu-service host has described itself)."""
    served: int
    failed: int


class PoolView(BaseModel):
    strategy: str
    mode: Literal["normal", "panic"]
    """panic: no host is usable, so the pool tries them anyway."""
    hosts: list[HostView]
    panics: int
    hedges: int
