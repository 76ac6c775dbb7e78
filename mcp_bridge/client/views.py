"""Typed views of the fleet: what gpu_health, gpu_info and gpu_status report per host (the pool's view of
each host with the hosts' own /info and /status in the protocol's models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from gpu_protocol.status import InfoResponse, StatusResponse
from mcp_bridge.pool.views import HostView, ServedModels, SharingView


class Unreachable(BaseModel):
    error: str


class HostStatus(HostView):
    """The pool's record of a host and the host's own /status (or why it could not be read)."""

    service: StatusResponse | Unreachable


class FleetStatus(BaseModel):
    """What gpu_status shows: the pool's view, each host with its own /status."""

    strategy: str
    mode: Literal["normal", "panic"]
    hosts: list[HostStatus]
    panics: int
    hedges: int
    sharing: SharingView | None = None
    """The bridge's fair share of host slots: per class waiting and waits, per tenant items and refusals."""


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
    paths: str | None = None
    """Where an openai host is called and which health path chose that (None for other types)."""


class InfoRow(BaseModel):
    name: str
    url: str
    info: InfoResponse | None = None
    error: str | None = None
    described: bool = True
    """False for a host whose type has no /info (the error says so); not a failure."""
    models: list[ServedModels] = []
    """Per task, the models it serves as the bridge routes by them (an openai/tei host: its configured `model`)."""
