"""The pool's record of its hosts, as typed views: one host's state and counters, and the whole pool's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

HostState = Literal["healthy", "degraded", "unhealthy", "ejected", "cooling-down"]


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
    served: int
    failed: int


class PoolView(BaseModel):
    strategy: str
    mode: Literal["normal", "panic"]
    """panic: no host is usable, so the pool tries them anyway."""
    hosts: list[HostView]
    panics: int
    hedges: int
