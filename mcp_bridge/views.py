"""Typed views of the fleet: the pool's view of each host, and what gpu_health, gpu_info and gpu_status
report per host (the hosts' own /info and /status in the protocol's models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from gpu_protocol.status import InfoResponse, StatusResponse

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


class Unreachable(BaseModel):
    error: str


class HostStatus(HostView):
    """The pool's record of a host and the host's own /status (or why it could not be read)."""

    service: StatusResponse | Unreachable


class PoolView(BaseModel):
    strategy: str
    mode: Literal["normal", "panic"]
    """panic: no host is usable, so the pool tries them anyway."""
    hosts: list[HostView]
    panics: int
    hedges: int


class FleetStatus(BaseModel):
    """What gpu_status shows: the pool's view, each host with its own /status."""

    strategy: str
    mode: Literal["normal", "panic"]
    hosts: list[HostStatus]
    panics: int
    hedges: int


class HealthRow(BaseModel):
    """One host's health probe; `error` instead of the rest when it gave no answer."""

    name: str
    url: str
    type: str
    ok: bool
    status: str | int | None = None
    device: str | None = None
    problems: list[str] = []
    latency_ms: float | None = None
    error: str | None = None


class InfoRow(BaseModel):
    name: str
    url: str
    info: InfoResponse | None = None
    error: str | None = None
    described: bool = True
    """False for a host whose type has no /info (the error says so); not a failure."""
