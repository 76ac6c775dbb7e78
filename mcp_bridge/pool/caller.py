"""Who a call is for: the seam between the bridge's front ends and its pool (docs/sharing.md).

A front end (the MCP server, the HTTP API) learns the caller from its token: the client's name (its
tenant) and the highest class it may use. It sets `current_caller` for the call; everything below reads
it from there (the call's class, the pool's fair share of host slots, the `X-GPU-Priority` and
`X-GPU-Tenant` headers sent to hosts), so no signature between them has to carry it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from gpu_protocol.priority import Priority, capped


@dataclass(frozen=True)
class Caller:
    tenant: str = ""
    """The client's name from the bridge's `clients` list ("" for the single `--auth-token`, stdio, or none)."""
    highest: Priority = "interactive"
    """The highest class this caller may use (a batch client's calls are all batch)."""
    asked: Priority | None = None
    """The class the caller asked for (`X-GPU-Priority` on HTTP); None: the call's size decides."""

    def priority(self, by_size: Priority) -> Priority:
        """The class of one call: what the caller asked for, else what its size says, within what it may use."""
        return capped(self.asked or by_size, self.highest)


ANONYMOUS = Caller()
current_caller: ContextVar[Caller] = ContextVar("current_caller", default=ANONYMOUS)
"""Set by a front end for the duration of one call; the default is a caller with every right."""
