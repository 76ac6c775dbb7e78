"""What the bridge knows of each host's protocol version and capabilities, and how it fits requests to them.

A versioned host (our gpu-service) states its protocol version on every answer (a header) and in
`/info`, with its models per task (`capabilities`); the health loop reads `/info` at every check, so
`Host.described` is at most one health interval old. Until a host has answered, it is taken for the
oldest version (1, release 0.3.0), whose requests every host takes.

Before a request goes to a host, `fit_call` leaves out the fields the host's version does not take
when they hold their default (the host does the same without them); when a field would change the
answer, the host is unfit for that call (`FieldUnsupported`): the pool routes the call to a host that
takes it, or, when none does, fails it naming each host and its version (docs/compatibility.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from gpu_protocol.capabilities import TaskModels, model_key
from gpu_protocol.priority import PRIORITY_HEADER
from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.status import InfoResponse
from gpu_protocol.versions import OLDEST_VERSION, FieldUnsupported, fit_request, stated_version

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host
    from mcp_bridge.protocols import HttpCall

__all__ = ["FieldUnsupported", "HostDescription", "fit_call", "learn_from_info", "note_answer"]


@dataclass
class HostDescription:
    """What a host said about itself; empty until it answered."""

    version: int | None = None
    """Its protocol version; None: not heard yet (requests are fitted to the oldest)."""
    capabilities: dict[str, TaskModels] | None = None
    """Per task, its models (from /info); None: not read yet, or a host older than version 2."""
    queues_by_class: bool = False
    """Whether it queues by class and tenant: its answers name the class a request queued in (`X-GPU-Priority`).
    A 0.4.0 service, or a server of another kind, serves first come, first served."""
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    """(task, model key) -> the model as named, for each model it refused with a 403 ("not allowed here")
    since its /info was last read: routing sends it no call naming that model until then (pool/routing.py)."""

    @property
    def speaks(self) -> int:
        return self.version if self.version is not None else OLDEST_VERSION

    def refuse(self, task: str, model: str) -> None:
        self.refused[(task, model_key(model))] = model

    def refuses(self, task: str, model: str) -> bool:
        return bool(self.refused) and (task, model_key(model)) in self.refused


def note_answer(host: Host, response: httpx.Response) -> None:
    """A versioned host's successful answer states its version (none: version 1), and a compute answer the
    class its request queued in where the host queues by class. Error answers may come from a proxy in front
    of it, so only successes are read."""
    if host.protocol.versioned and response.status_code < 400:
        host.described.version = stated_version(response.headers.get(PROTOCOL_HEADER))
        if PRIORITY_HEADER in response.headers:
            host.described.queues_by_class = True


def learn_from_info(host: Host, info: InfoResponse) -> None:
    """What the host's /info says: its version and its models per task (which replace what its refusals taught)."""
    host.described.version = info.protocol_version
    host.described.capabilities = info.capabilities
    host.described.refused.clear()


def fit_call(host: Host, call: HttpCall) -> HttpCall:
    """`call` as `host`'s protocol version takes it (FieldUnsupported when it cannot)."""
    if not host.protocol.versioned or not isinstance(call.json, dict):
        return call
    body = fit_request(call.path, call.json, host.described.speaks)
    return call if len(body) == len(call.json) else type(call)(call.method, call.path, body)
