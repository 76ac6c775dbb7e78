"""The fleet views gpu_health, gpu_info and gpu_status show: every host asked at once (with the
pool's probes, `pool/probes.py`, the health loop's own), each bounded in time."""

from __future__ import annotations

import time

from gpu_protocol import routes
from gpu_protocol.status import InfoResponse, StatusResponse
from mcp_bridge.client.views import FleetStatus, HealthRow, HostStatus, InfoRow, Unreachable
from mcp_bridge.pool.errors import PoolError
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.probes import PROBE_TIMEOUT_S, check_health, each, read_info, read_status
from mcp_bridge.pool.routing import served_models


class Fleet:
    """What gpu_health, gpu_info and gpu_status report: every host asked at once, each bounded in time."""

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool

    async def health(self) -> list[HealthRow]:
        async def probe(h: Host) -> HealthRow:
            started = time.perf_counter()
            verdict = await check_health(h, PROBE_TIMEOUT_S)
            if verdict.serving:
                h.note_problems(verdict.problems)
            return HealthRow(
                name=h.name, url=h.url, type=h.protocol.type, ok=verdict.serving, status=verdict.status,
                device=verdict.device, problems=verdict.problems,
                latency_ms=round((time.perf_counter() - started) * 1000, 1), paths=h.protocol.paths(),
            )

        return [
            result or HealthRow(name=h.name, url=h.url, type=h.protocol.type, ok=False, error=error,
                                paths=h.protocol.paths())
            for h, result, error in await each(self.pool.hosts, probe, PROBE_TIMEOUT_S + 0.5)
        ]

    async def info(self) -> list[InfoRow]:
        async def info(h: Host) -> InfoResponse:
            found = await read_info(h, PROBE_TIMEOUT_S)
            if found is None:
                raise PoolError(f"{h.protocol.type} host: no {routes.INFO}")
            return found

        return [
            InfoRow(name=h.name, url=h.url, info=result, models=served_models(h)) if result is not None
            else InfoRow(name=h.name, url=h.url, error=error, described=h.protocol.info_call() is not None,
                         models=served_models(h))
            for h, result, error in await each(self.pool.hosts, info, PROBE_TIMEOUT_S + 0.5)
        ]

    async def status(self) -> FleetStatus:
        async def status(h: Host) -> StatusResponse:
            found = await read_status(h, PROBE_TIMEOUT_S)
            if found is None:
                raise PoolError(f"{h.protocol.type} host: no {routes.STATUS}")
            h.note_status(found)
            return found

        view = self.pool.snapshot()
        remote = {h.name: (result, error) for h, result, error in await each(self.pool.hosts, status, PROBE_TIMEOUT_S + 0.5)}
        hosts = []
        for row in view.hosts:
            result, error = remote.get(row.name, (None, "left the pool while being asked"))
            service = result if result is not None else Unreachable(error=error or "no answer")
            hosts.append(HostStatus(**row.model_dump(), service=service))
        return FleetStatus(strategy=view.strategy, mode=view.mode, hosts=hosts, panics=view.panics, hedges=view.hedges,
                           sharing=view.sharing)
