"""What each tenant has done: calls and items served, refusals, calls running, quota left. One object per
client, read by `gpu_status` (and by whatever shows per-tenant metrics) through `snapshot()`."""

from __future__ import annotations

from dataclasses import dataclass

from gpu_protocol.priority import Priority


@dataclass
class TenantUsage:
    """Counters of one client since the bridge started."""

    requests: int = 0
    """Calls admitted."""
    items: int = 0
    """Items of the admitted calls (access/items.py)."""
    refused_scope: int = 0
    """403s and scope tool errors: a tool, route or model outside its scope."""
    refused_quota: int = 0
    """429s (and too-large calls) and quota tool errors."""


@dataclass(frozen=True)
class TenantSnapshot:
    """One tenant's row in the status."""

    tenant: str
    """The client's name ("(--auth-token)" for the single token)."""
    priority: Priority
    requests: int
    items: int
    refused_scope: int
    refused_quota: int
    in_flight: int
    requests_left: int | None
    """Calls it may still make this minute (None: no requestsPerMinute)."""
    items_left: int | None
    """Items it may still send this minute (None: no itemsPerMinute)."""
