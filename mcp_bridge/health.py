"""Active health checks: probe every host's `/health` on a jittered interval.

A host is marked unhealthy after `unhealthyThreshold` failed probes and healthy again
after `healthyThreshold` passing ones; a passing probe also ends an ejection. Hosts
that are down are probed four times as often, so they come back quickly. `/health`
needs no key, and a 401 on a compute call is never counted against a host, so a
wrong key never makes a host flap: it is reported by the calls that need it.

The loop belongs to the bridge's lifetime: `start()` on entry, `stop()` on exit.
"""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from mcp_bridge.hosts import Host
from mcp_bridge.pool import HostPool

log = logging.getLogger("mcp_bridge.health")


class HealthMonitor:
    def __init__(self, pool: HostPool, rng: random.Random | None = None) -> None:
        self.pool = pool
        self.interval = pool.config.healthCheckIntervalSeconds
        self.timeout = pool.config.healthCheckTimeoutSeconds
        self._rng = rng or random.Random()
        self._tasks: list[asyncio.Task[None]] = []

    async def probe(self, host: Host) -> bool:
        """One probe; updates the host's record. True if the host answered 200 with a serving status
        (ok, or degraded: it lacks a default model but serves the others)."""
        was_usable = host.usable(self.pool._clock())
        try:
            response = await host.client.get(host.health_path, timeout=self.timeout)
            body = response.json() if host.kind == "gpu-service" and response.status_code == 200 else None
            ok = host.is_healthy_answer(response.status_code, body)
            error = None if ok else f"health probe: HTTP {response.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            ok, error = False, f"health probe: {type(exc).__name__}"
        if ok and host.kind == "gpu-service" and self.pool.strategy == "least-busy":
            await self._refresh_queue(host)
        if ok:
            host.probe_passed()
            before = host.record.problems
            host.note_health(body)
            if host.record.problems and host.record.problems != before:
                log.warning("host %s is degraded: %s", host.name, "; ".join(host.record.problems))
        else:
            host.probe_failed(error or "health probe failed")
        now_usable = host.usable(self.pool._clock())
        if was_usable != now_usable:
            log.warning("host %s is now %s", host.name, host.state(self.pool._clock()))
        return ok

    async def _refresh_queue(self, host: Host) -> None:
        """Least-busy also weighs the host's own queue (other clients' work), read from /status."""
        try:
            response = await host.client.get("/status", timeout=self.timeout)
            if response.status_code == 200:
                host.note_status(response.json())
        except (httpx.HTTPError, ValueError):
            pass  # the queue is a hint; liveness was decided by /health

    def next_delay(self, host: Host) -> float:
        base = self.interval if host.usable(self.pool._clock()) else max(0.25, self.interval / 4)
        return base * self._rng.uniform(0.9, 1.1)

    async def _watch(self, host: Host) -> None:
        while True:
            await asyncio.sleep(self.next_delay(host))
            try:
                await self.probe(host)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a probe bug must not end the loop
                log.exception("health probe of %s crashed", host.name)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._watch(h), name=f"health-{h.name}") for h in self.pool.hosts]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
