"""Hosts out of one pool call: those that cannot serve it however often they are asked.

A host that answered malformed (a parse error, not a dropped connection) would answer the same
again, a host whose protocol version does not take a field the call needs cannot take it at
all, and a host that failed to load the call's model (routing.py) would fail again: none is tried again in
that call, and once every host that serves the task is out, the
call fails at once with each host's reason instead of waiting out its deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mcp_bridge.pool.errors import NoHostAvailable
from mcp_bridge.pool.versioning import FieldUnsupported, fit_call

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host
    from mcp_bridge.protocols import HttpCall


class OutForCall:
    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self.model_failures: set[str] = set()
        """Hosts out because they could not load the call's model."""

    @property
    def names(self) -> set[str]:
        return set(self.reasons)

    def add(self, host: Host, reason: str) -> None:
        self.reasons[host.name] = reason

    def add_model_failure(self, host: Host, reason: str) -> None:
        self.add(host, f"{host.name}: {reason}")
        self.model_failures.add(host.name)

    def fit(self, host: Host, call: Callable[[Host], HttpCall], calls: dict[str, HttpCall], errors: list[str]) -> bool:
        """Build `host`'s request into `calls`, fitted to its protocol version; False (and the host out)
        when its version cannot take it."""
        if host.name in calls:
            return True
        try:
            calls[host.name] = fit_call(host, call(host))
        except FieldUnsupported as exc:
            unheard = " (not heard from yet, so taken for the oldest)" if host.described.version is None else ""
            reason = f"host {host.name!r} speaks {exc}{unheard}"
            self.add(host, reason)
            errors.append(reason)
            return False
        return True

    def raise_if_all(self, able: list[Host], task: str, errors: list[str]) -> None:
        """NoHostAvailable when every host able to serve `task` is out of this call."""
        if not able or any(h.name not in self.reasons for h in able):
            return
        if self.model_failures:
            shown = "; ".join(sorted(self.reasons.values()))
            raise NoHostAvailable(f"no host that serves {task} with this model could load it: {shown}")
        unfit = [r for r in self.reasons.values() if r != "malformed answer"]
        if unfit:
            hint = ": upgrade those hosts, or leave that option out"
            raise NoHostAvailable(f"no host can take this {task} request: " + "; ".join(sorted(unfit)) + hint)
        shown = "; ".join(errors[-4:])
        raise NoHostAvailable(f"every host that serves {task} answered malformed (not retried): {shown}")
