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
    batch_cooling_s: float | None = None
    """Seconds batch calls still leave it alone (it refused one with a 429: its batch queue is full; interactive
    calls still go); None when they do not."""
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


class ClassView(BaseModel):
    """One priority class at the bridge's slot gate (gate.py)."""

    waiting: int
    """Shards waiting for a host slot now."""
    oldest_wait_s: float
    """How long the longest-waiting of them has waited (0 when none waits)."""
    mean_wait_s: float | None = None
    """The mean wait of the last 200 shards that had to wait for a slot (None: none had to)."""
    waited: int = 0
    """How many shards that mean is over."""


class QuotaLeft(BaseModel):
    """A `clients` entry's use of its rights (mcp_bridge/access): what it may still use this minute (None: no
    such limit), calls running now, and its refusals."""

    requests: int | None = None
    items: int | None = None
    in_flight: int | None = None
    refused_scope: int = 0
    """403s and tool errors for a tool, route or model outside its scope."""
    refused_quota: int = 0
    """429s (and too-large calls) and tool errors for being over its quotas."""


class TenantView(BaseModel):
    """One tenant (a client's name; "" for calls without one) as the pool saw it."""

    items: int = 0
    """Items (texts, documents, pairs; a request each for audio) sent to hosts for it, retries included."""
    refusals: int = 0
    """Its calls the pool refused because every host was busy (a 429 to the caller)."""
    waiting_items: int = 0
    """Items of its shards waiting for a host slot now."""
    quota_left: QuotaLeft | None = None
    """Its client's quotas' remainders and refusals (an HTTP bridge with tokens; None otherwise)."""


class SharingView(BaseModel):
    """The bridge's fair share of host slots (docs/sharing.md): per class, per tenant."""

    classes: dict[str, ClassView]
    tenants: dict[str, TenantView]


def sharing_in_words(view: SharingView) -> list[str]:
    """The fair share in lines (gpu_status's summary, `gpu-bridge --check`)."""
    lines = []
    for name, c in view.classes.items():
        mean = f", mean wait {c.mean_wait_s:.2f}s over the last {c.waited}" if c.mean_wait_s is not None else ""
        lines.append(f"{name}: {c.waiting} shard(s) waiting for a host slot, oldest {c.oldest_wait_s:.2f}s{mean}")
    for tenant, t in view.tenants.items():
        quota = t.quota_left
        left = "" if quota is None else (
            f"; {quota.in_flight} running, left this minute: {_left(quota.requests)} requests, "
            f"{_left(quota.items)} items; refused {quota.refused_scope} out of scope, {quota.refused_quota} over quota")
        lines.append(f"tenant {tenant or '(none)'}: {t.items} items sent, {t.refusals} refused (busy), "
                     f"{t.waiting_items} items waiting{left}")
    return lines


def _left(count: int | None) -> str:
    return "unlimited" if count is None else str(count)


def queued_in_words(queue_depth: int, by_class: dict[str, int] | None) -> str:
    """A host's queue, per class where the host says (a host older than the classes does not)."""
    if not by_class:
        return str(queue_depth)
    return f"{queue_depth} ({', '.join(f'{name} {count}' for name, count in by_class.items())})"


class PoolView(BaseModel):
    strategy: str
    mode: Literal["normal", "panic"]
    """panic: no host is usable, so the pool tries them anyway."""
    hosts: list[HostView]
    panics: int
    hedges: int
    sharing: SharingView | None = None
