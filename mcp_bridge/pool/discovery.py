"""Hosts from DNS: a config entry with `discover: "dns"` stands for every address its URL's name resolves to.

In Kubernetes a headless Service (`clusterIP: None`) has one A/AAAA record per ready pod. A
normal Service's ClusterIP hides the pods, and kube-proxy pins each keep-alive connection to
one of them, so the bridge would see one host and send everything to one pod. Resolving the
headless name instead gives the pool one host per pod, named `<entry name>@<ip>`, with the
entry's settings (key, type, weight, timeouts, cluster, ...), so least-busy, ejection and
sharding work per pod.

The name is resolved when the bridge starts and again every `healthCheckIntervalSeconds`:
a new address joins the pool (and the health loop starts watching it); a vanished one
leaves it (requests in flight on it finish, then its client is closed). A failed lookup
keeps the hosts the pool has: DNS trouble must not empty a working pool.

The resolver is a parameter (a name to its addresses) so tests can serve changing answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from mcp_bridge.config import HostConfig
from mcp_bridge.pool.health import HealthMonitor
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.pool import HostPool

log = logging.getLogger(__name__)

Resolver = Callable[[str], Awaitable[list[str]]]
"""A DNS name to its IP addresses (A and AAAA)."""


async def resolve_dns(name: str) -> list[str]:
    """The name's addresses from the system resolver, each once, in a stable order."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def address_url(url: str, ip: str) -> str:
    """`url` with its host name replaced by `ip` (bracketed if IPv6), port and path kept."""
    parts = urlsplit(url)
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class DnsDiscovery:
    """Keeps the pool's hosts for each `discover: "dns"` entry in step with what its name resolves to."""

    def __init__(
        self, pool: HostPool, monitor: HealthMonitor | None = None, resolver: Resolver = resolve_dns
    ) -> None:
        self.pool = pool
        self.monitor = monitor
        self.resolver = resolver
        self.interval = pool.config.healthCheckIntervalSeconds
        self.entries = [h for h in pool.config.pool_hosts() if h.discover == "dns"]
        self._found: dict[str, dict[str, Host]] = {e.label: {} for e in self.entries}
        """Per entry: address -> the host made for it."""
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Resolve every entry once and bring the pool in line with the answers."""
        for entry in self.entries:
            await self._refresh(entry)

    async def _refresh(self, entry: HostConfig) -> None:
        name = urlsplit(entry.url).hostname or ""
        try:
            addresses = set(await self.resolver(name))
        except OSError as exc:
            log.warning("DNS discovery: cannot resolve %s for host %s (keeping %d host(s)): %s",
                        name, entry.label, len(self._found[entry.label]), exc)
            return
        found = self._found[entry.label]
        for ip in sorted(addresses - found.keys()):
            host = self.pool.add_host(entry, name=f"{entry.label}@{ip}", url=address_url(entry.url, ip))
            found[ip] = host
            if self.monitor is not None:
                self.monitor.watch(host)
            log.info("DNS discovery: %s joins the pool (%s)", host.name, host.url)
        for ip in sorted(found.keys() - addresses):
            host = found.pop(ip)
            if self.monitor is not None:
                self.monitor.unwatch(host)
            self.pool.remove_host(host)
            log.info("DNS discovery: %s leaves the pool (%s no longer resolves to it)", host.name, name)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one refresh must not end discovery
                log.exception("DNS discovery refresh crashed")

    async def start(self) -> None:
        """Resolve once now (the pool has its hosts before the first call), then keep re-resolving."""
        if not self.entries or self._task is not None:
            return
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="dns-discovery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
