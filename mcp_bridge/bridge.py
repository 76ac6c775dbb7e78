"""The bridge's running parts, started and stopped together.

`Bridge` owns the host pool, the health monitor, DNS discovery (hosts from `discover: "dns"` entries) and (with no hosts configured) the
embedded GPU service. The MCP server's tools call `bridge.gpu`. Using it as an async
context manager guarantees the health loop and any child process stop with it.
"""

from __future__ import annotations

import logging
from types import TracebackType

from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import BridgeConfig, HostConfig
from mcp_bridge.embedded import NOT_CONFIGURED, EmbeddedService, service_installed
from mcp_bridge.pool.discovery import DnsDiscovery, Resolver, resolve_dns
from mcp_bridge.pool.health import HealthMonitor
from mcp_bridge.pool.pool import HostPool

log = logging.getLogger("mcp_bridge")


class Bridge:
    def __init__(
        self, config: BridgeConfig, *, allow_embedded: bool = True, resolver: Resolver = resolve_dns
    ) -> None:
        self.config = config
        self.resolver = resolver
        """How `discover: "dns"` host names are resolved (tests pass their own)."""
        self.discovery: DnsDiscovery | None = None
        self.allow_embedded = allow_embedded
        self.embedded: EmbeddedService | None = None
        self.pool: HostPool | None = None
        self.monitor: HealthMonitor | None = None
        self._gpu: GpuClient | None = None
        self.not_configured: str | None = None
        """Set when there are no hosts and no embedded service: every tool call reports it."""

    @property
    def gpu(self) -> GpuClient:
        if self._gpu is None:
            raise RuntimeError("the bridge is not started")
        return self._gpu

    async def __aenter__(self) -> Bridge:
        if not self.config.pool_hosts():
            if not (self.allow_embedded and service_installed()):
                # Start anyway: the tools must appear, and each call says how to configure hosts
                # (a server that dies at start-up leaves the agent with no tools and no reason).
                log.warning("%s", NOT_CONFIGURED)
                self.not_configured = NOT_CONFIGURED
                return await self._start_pool()
            self.embedded = EmbeddedService()
            await self.embedded.start()
            self.config = self.config.model_copy(
                update={"hosts": [HostConfig(name="local", url=self.embedded.url)]}
            )
        return await self._start_pool()

    async def _start_pool(self) -> Bridge:
        self.pool = HostPool(self.config)
        self.monitor = HealthMonitor(self.pool)
        self.monitor.start()
        self.discovery = DnsDiscovery(self.pool, self.monitor, self.resolver)
        await self.discovery.start()
        self._gpu = GpuClient(self.config, self.pool)
        log.info(
            "bridge ready: %d host(s), %s: %s", len(self.pool.hosts), self.config.loadBalancing,
            ", ".join(h.name for h in self.pool.hosts),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Ctrl-C can cancel us again mid-cleanup: the child process is stopped whatever happens.
        try:
            if self.discovery is not None:
                await self.discovery.stop()
            if self.monitor is not None:
                await self.monitor.stop()
            if self.pool is not None:
                await self.pool.close()
        finally:
            if self.embedded is not None:
                self.embedded.stop()
            log.info("bridge stopped")
