"""What a pool call ends with when it cannot be served, and what one failed attempt on a host is.

`PoolError` and its kinds reach the tools (their message is safe to show an agent). `Failure`
and `HostFailed` never leave the pool: they carry one attempt's failure to the retry loop,
which holds it against the host (or cools the host down) and tries another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host


class PoolError(Exception):
    """A tool call could not be served; the message is safe to show the agent."""


class NoHostAvailable(PoolError):
    pass


class HostRejected(PoolError):
    """A host refused the request itself (4xx): retrying elsewhere would not help."""

    def __init__(self, host: str, status: int, detail: str, *, refused_model: bool = False) -> None:
        self.host = host
        self.status = status
        self.detail = detail
        self.refused_model = refused_model
        """A 403 for a call that names a model: the host does not serve that model (another may)."""
        super().__init__(f"host {host!r} refused the request (HTTP {status}): {detail}")


class PoolTimeout(PoolError):
    pass


class PoolBusy(NoHostAvailable):
    """Every host that was tried said it is busy (429/503 with Retry-After): come back later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


FailureKind = Literal["host", "busy", "model"]
"""Whose problem a failed attempt is: the host's (it counts toward its ejection); nobody's, the host is
busy (429/503 with Retry-After: it cools down that long); the call's model's (the host could not load it,
or does not serve it: the host keeps serving its other models, mcp_bridge.pool.routing)."""


@dataclass
class Failure:
    """One attempt on one host that failed: what happened, and whose problem it is (classify.py)."""

    message: str
    retry_after: float | None = None
    kind: FailureKind = "host"
    status: int | None = None
    """The HTTP status of an error answer; None when there was none (no connection, a timeout, garbage)."""
    too_late: bool = False
    """A busy host said the call would not finish there within the wait it was told (`X-GPU-Too-Late`): it is not
    waited for again in this call."""

    @property
    def busy(self) -> bool:
        return self.kind == "busy"


class HostFailed(Exception):
    """Raised inside the pool when an attempt fails; `host` is filled in once known."""

    def __init__(self, failure: Failure, host: Host | None = None) -> None:
        self.failure = failure
        self.host = host
