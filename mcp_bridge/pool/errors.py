"""What a pool call ends with when it cannot be served, and what one failed attempt on a host is.

`PoolError` and its kinds reach the tools (their message is safe to show an agent). `Failure`
and `HostFailed` never leave the pool: they carry one attempt's failure to the retry loop,
which holds it against the host (or cools the host down) and tries another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host


class PoolError(Exception):
    """A tool call could not be served; the message is safe to show the agent."""


class NoHostAvailable(PoolError):
    pass


class HostRejected(PoolError):
    """A host refused the request itself (4xx): retrying elsewhere would not help."""

    def __init__(self, host: str, status: int, detail: str) -> None:
        self.host = host
        self.status = status
        self.detail = detail
        super().__init__(f"host {host!r} refused the request (HTTP {status}): {detail}")


class PoolTimeout(PoolError):
    pass


class PoolBusy(NoHostAvailable):
    """Every host that was tried said it is busy (429/503 with Retry-After): come back later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Failure:
    """One attempt on one host that failed: what happened, and whether it counts against the host."""

    message: str
    retry_after: float | None = None
    counts: bool = True
    """Whether it counts against the host (busy answers do not)."""
    status: int | None = None
    """The HTTP status of an error answer; None when there was none (no connection, a timeout, garbage)."""
    model_only: bool = False
    """The host could not serve the call's model (it failed to load it): not held against the host,
    which keeps serving its other models (mcp_bridge.pool.routing)."""

    @property
    def busy(self) -> bool:
        """Only busy (429/503 with Retry-After): neither the host's fault nor the model's."""
        return not self.counts and not self.model_only


class HostFailed(Exception):
    """Raised inside the pool when an attempt fails; `host` is filled in once known."""

    def __init__(self, failure: Failure, host: Host | None = None) -> None:
        self.failure = failure
        self.host = host
