"""Asking hosts about themselves: one health probe, one /status read, one /info read (through each
host's protocol), and the fleet views gpu_health, gpu_info and gpu_status show.

The health loop and the tools share the probe and the status read, so a host is judged the
same way wherever it is asked.
"""

from __future__ import annotations

import time

import httpx

from gpu_protocol import routes
from gpu_protocol.status import InfoResponse, StatusResponse
from mcp_bridge.answers import error_detail
from mcp_bridge.errors import PoolError
from mcp_bridge.hosts import Host
from mcp_bridge.pool import HostPool
from mcp_bridge.protocols import HealthVerdict, HttpCall
from mcp_bridge.versioning import learn_from_info, note_answer
from mcp_bridge.views import FleetStatus, HealthRow, HostStatus, InfoRow, Unreachable

PROBE_TIMEOUT_S = 3.0


async def _get(host: Host, call: HttpCall, timeout: float) -> httpx.Response:
    response = await host.client.request(call.method, call.path, json=call.json, timeout=timeout)
    note_answer(host, response)
    return response


async def check_health(host: Host, timeout: float) -> HealthVerdict:
    """One health probe, judged by the host's protocol (httpx.HTTPError when it gives no answer)."""
    return host.protocol.judge_health(await _get(host, host.protocol.health_call(), timeout))


async def read_status(host: Host, timeout: float) -> StatusResponse | None:
    """The host's own /status (queue, jobs, models); None for hosts without one.
    PoolError for an error answer, BadResponse for garbage, httpx.HTTPError for none."""
    call = host.protocol.status_call()
    if call is None:
        return None
    return host.protocol.parse_status(_ok(await _get(host, call, timeout)))


async def read_info(host: Host, timeout: float) -> InfoResponse | None:
    """The host's /info (device, VRAM, models); None for hosts without one."""
    call = host.protocol.info_call()
    if call is None:
        return None
    info = host.protocol.parse_info(_ok(await _get(host, call, timeout)))
    learn_from_info(host, info)
    return info


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise PoolError(f"HTTP {response.status_code}: {error_detail(response)}")
    return response


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
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )

        return [
            result or HealthRow(name=h.name, url=h.url, type=h.protocol.type, ok=False, error=error)
            for h, result, error in await self.pool.each(probe, PROBE_TIMEOUT_S + 0.5)
        ]

    async def info(self) -> list[InfoRow]:
        async def info(h: Host) -> InfoResponse:
            found = await read_info(h, PROBE_TIMEOUT_S)
            if found is None:
                raise PoolError(f"{h.protocol.type} host: no {routes.INFO}")
            return found

        return [
            InfoRow(name=h.name, url=h.url, info=result) if result is not None
            else InfoRow(name=h.name, url=h.url, error=error, described=h.protocol.info_call() is not None)
            for h, result, error in await self.pool.each(info, PROBE_TIMEOUT_S + 0.5)
        ]

    async def status(self) -> FleetStatus:
        async def status(h: Host) -> StatusResponse:
            found = await read_status(h, PROBE_TIMEOUT_S)
            if found is None:
                raise PoolError(f"{h.protocol.type} host: no {routes.STATUS}")
            h.note_status(found)
            return found

        view = self.pool.snapshot()
        remote = {h.name: (result, error) for h, result, error in await self.pool.each(status, PROBE_TIMEOUT_S + 0.5)}
        hosts = []
        for row in view.hosts:
            result, error = remote.get(row.name, (None, "left the pool while being asked"))
            service = result if result is not None else Unreachable(error=error or "no answer")
            hosts.append(HostStatus(**row.model_dump(), service=service))
        return FleetStatus(strategy=view.strategy, mode=view.mode, hosts=hosts, panics=view.panics, hedges=view.hedges)
