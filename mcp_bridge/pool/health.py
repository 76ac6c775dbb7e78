"""Active health checks: probe every host on a jittered interval (its protocol says where and how).

A host is marked unhealthy after `unhealthyThreshold` failed probes and healthy again
after `healthyThreshold` passing ones; a passing probe also ends an ejection. Hosts
that are down are probed four times as often, so they come back quickly. `/health`
needs no key, and a 401 on a compute call is never counted against a host, so a
wrong key never makes a host flap: it is reported by the calls that need it.

The loop belongs to the bridge's lifetime: `start()` on entry, `stop()` on exit; hosts that join
or leave the pool later (DNS discovery) are watched and unwatched one by one.
"""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from mcp_bridge.pool.errors import PoolError
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.probes import check_health, read_info, read_status
from mcp_bridge.protocols.answers import BadResponse, describe_transport_error

log = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(self, pool: HostPool, rng: random.Random | None = None) -> None:
        self.pool = pool
        self.interval = pool.config.healthCheckIntervalSeconds
        self.timeout = pool.config.healthCheckTimeoutSeconds
        self._rng = rng or random.Random()
        self._tasks: dict[Host, asyncio.Task[None]] = {}
        self._started = False

    async def probe(self, host: Host) -> bool:
        """One probe; updates the host's record. True if the host's protocol judges it serving
        (for our service: ok, or degraded: it lacks a default model but serves the others)."""
        was_usable = host.usable(self.pool.clock())
        problems: list[str] = []
        try:
            verdict = await check_health(host, self.timeout)
            ok, error, problems = verdict.serving, f"health probe: {verdict.reason}", verdict.problems
        except httpx.HTTPError as exc:
            ok, error = False, f"health probe: {describe_transport_error(exc)}"
        if ok and self.pool.strategy == "least-busy":
            await self._refresh_queue(host)
        if ok:
            await self._refresh_info(host)  # its protocol version and models per task, at every check
            host.probe_passed()
            if host.note_problems(problems) and problems:
                log.warning("host %s is degraded: %s", host.name, "; ".join(problems))
        else:
            host.probe_failed(error)
        now_usable = host.usable(self.pool.clock())
        if was_usable != now_usable:
            log.warning("host %s is now %s", host.name, host.state(self.pool.clock()))
        return ok

    async def _refresh_queue(self, host: Host) -> None:
        """Least-busy also weighs the host's own queue (other clients' work), read from its /status."""
        try:
            status = await read_status(host, self.timeout)
        except (httpx.HTTPError, PoolError, BadResponse):
            return  # the queue is a hint; liveness was decided by the health probe
        if status is not None:
            host.note_status(status)

    async def _refresh_info(self, host: Host) -> None:
        """Its protocol version and models per task, from its /info (read into `host.described`)."""
        try:
            await read_info(host, self.timeout)
        except (httpx.HTTPError, PoolError, BadResponse):
            return  # a hint for routing; liveness was decided by the health probe

    def next_delay(self, host: Host) -> float:
        base = self.interval if host.usable(self.pool.clock()) else max(0.25, self.interval / 4)
        return base * self._rng.uniform(0.9, 1.1)

    async def _watch(self, host: Host) -> None:
        first = host.protocol.paths_unknown  # where its routes are must be known before the first call
        while True:
            if not first:
                await asyncio.sleep(self.next_delay(host))
            first = False
            try:
                await self.probe(host)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a probe bug must not end the loop
                log.exception("health probe of %s crashed", host.name)

    def start(self) -> None:
        if not self._started:
            self._started = True
            for host in self.pool.hosts:
                self.watch(host)

    def watch(self, host: Host) -> None:
        """Probe `host` from now on (a host that joined the pool; at start, every host)."""
        if host not in self._tasks:
            self._tasks[host] = asyncio.create_task(self._watch(host), name=f"health-{host.name}")

    def unwatch(self, host: Host) -> None:
        """Stop probing `host` (it left the pool)."""
        task = self._tasks.pop(host, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = {}
        self._started = False
