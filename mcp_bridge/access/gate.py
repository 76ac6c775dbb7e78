"""The one door both front ends use: a token to a client, then for each call its scope (tool, model) and its
quota, counted per tenant. A refusal is an exception the front end words for its callers (403/429 on `/v1`, a
tool error over MCP)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from mcp_bridge.access.identity import Client, Directory, resolve_clients
from mcp_bridge.access.quota import Clock, OverQuota, Quota, Remaining, TooLarge
from mcp_bridge.access.scopes import OutOfScope, check_tool, model_for
from mcp_bridge.access.usage import TenantSnapshot, TenantUsage
from mcp_bridge.config import BridgeConfig


@dataclass
class Admission:
    """An admitted call: the model it runs (see `scopes.model_for`) and the quota left; leaving the `with`
    block ends the call (its place in flight is given back)."""

    model: str | None
    remaining: Remaining
    quota: Quota

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.quota.release()


class Access:
    """The clients of an HTTP bridge, their quotas and their usage."""

    def __init__(self, clients: Sequence[Client], clock: Clock = time.monotonic) -> None:
        self.directory = Directory(clients)
        self._quotas = {c.name: self._quota(c, clock) for c in clients}
        self._usage = {c.name: TenantUsage() for c in clients}

    @classmethod
    def from_config(cls, config: BridgeConfig, auth_token: str | None, env: Mapping[str, str]) -> Access | None:
        """The bridge's access rules; None when it has neither `clients` nor a token (anyone may call it)."""
        clients = resolve_clients(config.clients, auth_token, env)
        return cls(clients) if clients else None

    @staticmethod
    def _quota(client: Client, clock: Clock) -> Quota:
        rights = client.rights
        if rights is None:
            return Quota(None, None, None, clock)
        return Quota(rights.requestsPerMinute, rights.itemsPerMinute, rights.maxInFlight, clock)

    def identify(self, token: bytes | None) -> Client | None:
        return self.directory.identify(token)

    def check_scope(self, client: Client, tool: str, route: str | None = None) -> None:
        """OutOfScope (counted) when `client` may not call `tool` (through `route`)."""
        try:
            check_tool(client, tool, route)
        except OutOfScope:
            self._usage[client.name].refused_scope += 1
            raise

    def admit(self, client: Client, tool: str, items: int, model: str | None = None) -> Admission:
        """One call of `tool` with `items` items naming `model`: its scope, then its quota. Raises OutOfScope,
        OverQuota or TooLarge (each counted as the client's refusal); use the Admission as a `with` block."""
        usage = self._usage[client.name]
        try:
            check_tool(client, tool)
            runs = model_for(client, tool, model)
        except OutOfScope:
            usage.refused_scope += 1
            raise
        quota = self._quotas[client.name]
        try:
            remaining = quota.admit(items)
        except (OverQuota, TooLarge):
            usage.refused_quota += 1
            raise
        usage.requests += 1
        usage.items += items
        return Admission(runs, remaining, quota)

    def remaining(self, client: Client) -> Remaining:
        return self._quotas[client.name].remaining()

    def snapshot(self) -> list[TenantSnapshot]:
        """Every client's counters and quota left, in the order of the config."""
        rows = []
        for client in self.directory.clients:
            usage, quota = self._usage[client.name], self._quotas[client.name]
            left = quota.remaining()
            rows.append(TenantSnapshot(client.label, client.priority, usage.requests, usage.items,
                                       usage.refused_scope, usage.refused_quota, quota.in_flight,
                                       left.requests, left.items))
        return rows
