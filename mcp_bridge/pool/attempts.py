"""One pool request's attempts: the hosts it may use, those tried this round, and what failed."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp_bridge.pool.errors import Failure, HostRejected
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.out_for_call import OutForCall
from mcp_bridge.pool.routing import Need
from mcp_bridge.protocols import HttpCall, Task


@dataclass
class Attempts:
    need: Need
    """The task and the model the call names (routing.py)."""
    able: list[Host]
    """The hosts that may serve the task and model (the pinned one only, when pinned); narrowed as routing learns."""
    deadline: float
    pin: str | None = None
    prefer: str | None = None
    """The host for the first attempt, if usable (cleared once used)."""
    tried: set[str] = field(default_factory=set)
    """Hosts tried this round (cleared before the next round)."""
    errors: list[str] = field(default_factory=list)
    busy_only: bool = True
    """Every failure so far was a busy answer (429/503 with Retry-After)."""
    first: bool = True
    previous: Host | None = None
    out: OutForCall = field(default_factory=OutForCall)
    """Hosts that cannot serve this call at all (a malformed answer, too old a protocol version)."""
    calls: dict[str, HttpCall] = field(default_factory=dict)
    """Each host's request, built once and fitted to its protocol version."""
    refusal: HostRejected | None = None
    """The last host's refusal of the call's model (403): the call's answer once no host is left."""

    def note_tried(self, host: Host) -> None:
        """`host` is being tried: a plain host once per round; a cluster host stands for many replicas, so the
        next try (or a hedge) may go through it again and find another."""
        if not host.cluster:
            self.tried.add(host.name)

    def preferred(self, now: float) -> Host | None:
        """The host asked for first, once, if it may serve the call and is usable with room now."""
        name, self.prefer = self.prefer, None
        if name is None or name in self.tried or name in self.out.names:
            return None
        host = next((h for h in self.able if h.name == name), None)
        return host if host is not None and host.usable(now) and host.has_capacity() else None

    @property
    def task(self) -> Task:
        return self.need.task

    def failed(self, host: Host, failure: Failure) -> None:
        self.errors.append(f"{host.name}: {failure.message}")
        self.busy_only = self.busy_only and failure.busy

    def summary(self, message: str) -> str:
        """`message`, with the last few failures (and how many came before)."""
        if not self.errors:
            return message
        shown = self.errors[-4:]
        more = f" (+{len(self.errors) - len(shown)} earlier)" if len(self.errors) > len(shown) else ""
        return f"{message}: " + "; ".join(shown) + more
