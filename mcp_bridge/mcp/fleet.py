"""gpu_health, gpu_info and gpu_status: the fleet as the agent sees it (costs nothing on the GPUs).

No `from __future__ import annotations` here: the SDK reads the tools' signatures at registration,
and their types are built from the bridge's limits."""

from collections.abc import Sequence
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from gpu_protocol.status import StatusResponse
from mcp_bridge.access.usage import TenantSnapshot
from mcp_bridge.client.views import FleetStatus, HealthRow, HostStatus, InfoRow
from mcp_bridge.mcp.tools import READ_ONLY, Tools, result
from mcp_bridge.pool.views import (
    QuotaLeft,
    SharingView,
    TenantView,
    models_in_words,
    queued_in_words,
    sharing_in_words,
)

Rows = WithJsonSchema({"type": "array", "items": {"type": "object", "additionalProperties": True}})
"""The rows' schema stays open (one object per host): clients show them, they do not validate each field."""


def _given_fields(rows: Sequence[BaseModel]) -> list[dict[str, object]]:
    return [r.model_dump(mode="json", exclude_unset=True) for r in rows]


GivenFields = PlainSerializer(_given_fields)
"""Each row with the fields it was given only (a host that did not answer has no device, no models)."""


class HealthOutput(BaseModel):
    healthy: int = Field(description="Hosts that serve (ok, or degraded: a default model missing, see problems).")
    total: int
    hosts: Annotated[list[HealthRow], GivenFields, Rows] = Field(
        description="Per host: name, url, type, ok, status, device, problems, latency_ms, error.")


class InfoOutput(BaseModel):
    hosts: Annotated[list[InfoRow], GivenFields, Rows] = Field(
        description="Per host: name, url, its /info (device, VRAM, models) or error, and `models`: per task the "
        "default, loaded, allowed and failed models (a call naming a model goes only to hosts that serve it).")


class StatusOutput(BaseModel):
    strategy: str
    mode: Literal["normal", "panic"]
    panics: int
    hosts: Annotated[list[HostStatus], Rows] = Field(
        description="Per host: state, in_flight, ewma_latency_ms, consecutive_failures, last_error, served, "
        "`models` (per task: default, loaded, allowed, failed), "
        "and the host's own /status (queue depth, per class where the host says, active jobs with progress, "
        "loaded models)."
    )
    sharing: SharingView | None = Field(
        default=None, description="The bridge's fair share of host slots: per class (interactive, batch) the shards "
        "waiting and their waits, per tenant the items sent, refusals and items waiting (docs/sharing.md).")


def health_output(rows: list[HealthRow], tools: Tools) -> tuple[str, HealthOutput]:
    healthy = sum(1 for r in rows if r.ok)
    lines = [
        f"- {r.name}: {('degraded' if r.problems else 'ok') if r.ok else 'DOWN'}"
        + (f" on {r.device}" if r.device else "")
        + (f" ({r.latency_ms} ms)" if r.latency_ms is not None else "")
        + (f" - {r.error}" if r.error else "")
        + (f" - {'; '.join(r.problems)}" if r.ok and r.problems else "")
        for r in rows
    ]
    hosts = [r.model_copy(update={"error": tools.redact(r.error)}) if r.error else r for r in rows]
    out = HealthOutput(healthy=healthy, total=len(rows), hosts=hosts)
    return tools.redact(f"{healthy}/{len(rows)} GPU hosts healthy\n" + "\n".join(lines)), out


def info_summary(rows: list[InfoRow]) -> str:
    lines = []
    for r in rows:
        info = r.info
        if info is not None:
            loaded = ", ".join(f"{m.name} ({m.kind})" for m in info.models) or "none"
            vram = f", {info.vram_free_mb or 0:.0f}/{info.vram_total_mb:.0f} MiB free" if info.vram_total_mb else ""
            lines.append(f"- {r.name}: {info.device} ({info.device_name}{vram}); loaded: {loaded}")
        else:
            lines.append(f"- {r.name}: unavailable - {r.error}")
        if r.models:
            lines.append(f"  serves {models_in_words(r.models)}")
    return "\n".join(lines)


def with_clients(sharing: SharingView | None, clients: Sequence[TenantSnapshot]) -> SharingView:
    """The pool's fair share with each client's quota left and refusals added to its tenant's row."""
    sharing = sharing or SharingView(classes={}, tenants={})
    tenants = dict(sharing.tenants)
    for row in clients:
        tenants[row.tenant] = tenants.get(row.tenant, TenantView()).model_copy(update={"quota_left": QuotaLeft(
            requests=row.requests_left, items=row.items_left, in_flight=row.in_flight,
            refused_scope=row.refused_scope, refused_quota=row.refused_quota)})
    return sharing.model_copy(update={"tenants": tenants})


def status_output(view: FleetStatus) -> tuple[str, StatusOutput]:
    lines = [f"strategy {view.strategy}, mode {view.mode}"]
    for h in view.hosts:
        service = h.service if isinstance(h.service, StatusResponse) else None
        jobs = ", ".join(f"{j.kind} {j.model} {j.done}/{j.total}" for j in service.active_jobs) if service else ""
        lines.append(
            f"- {h.name}: {h.state}, {h.in_flight} in flight, "
            f"queue {queued_in_words(service.queue_depth, service.queued_by_class) if service else 'unreachable'}, "
            f"served {h.served}, failed {h.failed}"
            + (f", jobs: {jobs}" if jobs else "")
            + (f", last error: {h.last_error}" if h.last_error else "")
        )
    if view.sharing is not None:
        lines += ["fair share at the bridge:", *(f"  {line}" for line in sharing_in_words(view.sharing))]
    out = StatusOutput(strategy=view.strategy, mode=view.mode, panics=view.panics, hosts=view.hosts,
                       sharing=view.sharing)
    return "\n".join(lines), out


def register(server: MCPServer, tools: Tools) -> None:
    @server.tool(
        title="GPU hosts: liveness",
        description="Check which GPU hosts are up (fast, answers within a few seconds even if hosts hang). "
        "Use first when GPU tools fail. Costs nothing on the GPUs.",
        annotations=READ_ONLY,
    )
    async def gpu_health() -> Annotated[CallToolResult, HealthOutput]:
        summary, out = health_output(await tools.guarded(tools.gpu.health()), tools)
        return result(summary, out)

    @server.tool(
        title="GPU hosts: devices and models",
        description="Describe every GPU host: device name, VRAM, torch/CUDA versions, loaded and allowed models, "
        "limits. Use to choose a model or to explain a 'model not allowed' error.",
        annotations=READ_ONLY,
    )
    async def gpu_info() -> Annotated[CallToolResult, InfoOutput]:
        rows = await tools.guarded(tools.gpu.info())
        return result(tools.redact(info_summary(rows)), InfoOutput(hosts=rows))

    @server.tool(
        title="GPU pool: load and failures",
        description="The pool's view of every host (state healthy/degraded/ejected/unhealthy/cooling-down, in-flight "
        "requests, latency, failures, last error) plus each host's queue and job progress. Use to see why "
        "calls are slow or failing.",
        annotations=READ_ONLY,
    )
    async def gpu_status() -> Annotated[CallToolResult, StatusOutput]:
        view = await tools.guarded(tools.gpu.status())
        if tools.access is not None:
            view = view.model_copy(update={"sharing": with_clients(view.sharing, tools.access.snapshot())})
        summary, out = status_output(view)
        return result(tools.redact(summary), out)
