"""How the bridge talks to one kind of host: the `HostProtocol` interface (after httpx's `BaseTransport`).

One subclass per host type owns everything that differs between servers: which tasks it
serves, how its key is sent, per operation it serves one exchange (`exchanges()`: how the
request is built, as an `HttpCall`, and how the answer is read and checked; see exchange.py),
how health is probed and judged, how abandoned work is cancelled, and whether it has `/info`
and `/status`. The pool, the health loop and the tools only call these methods; none of them
asks what type a host is. Adding a host type is one subclass, registered in
`mcp_bridge.protocols`, and its test.

Reading an answer raises `BadResponse` when it does not fit (the pool holds it against the
host and tries another); any other exception is a bug in the bridge, never the host's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx

from gpu_protocol.priority import Priority
from gpu_protocol.routes import API_KEY_HEADER, AUTHORIZATION_HEADER
from gpu_protocol.status import InfoResponse, StatusResponse
from mcp_bridge.protocols.calls import HttpCall
from mcp_bridge.protocols.exchange import Ans, Exchange, Exchanges, Operation, Req, Task

if TYPE_CHECKING:
    from mcp_bridge.config import HostConfig

__all__ = ["HealthVerdict", "HostProtocol", "HttpCall", "Task", "Unsupported"]

AuthScheme = Literal["x-api-key", "bearer"]


@dataclass(frozen=True)
class HealthVerdict:
    """What one health probe found."""

    state: Literal["ok", "degraded", "down"]
    """ok and degraded serve (degraded: a default model is missing, see `problems`); down does not."""
    status: str | int
    """The host's own word for its state (our service's `status`), else the HTTP status code."""
    device: str | None = None
    problems: list[str] = field(default_factory=list)
    reason: str | None = None
    """Why it is down, e.g. `HTTP 503`."""

    @property
    def serving(self) -> bool:
        return self.state != "down"


class Unsupported(Exception):
    """A protocol was asked for something its hosts do not do (the pool never routes such a call)."""


class HostProtocol(ABC):
    type: ClassVar[str]
    """The `type` a host is configured with."""
    tasks: ClassVar[frozenset[Task]]
    serves: ClassVar[str]
    """What its hosts serve, in words for an error: `every tool`, `embeddings only`."""
    default_auth: ClassVar[AuthScheme]
    """How the key is sent when the host's `auth` is not set: what servers of this type expect."""
    versioned: ClassVar[bool] = False
    """Speaks our versioned wire protocol (gpu_protocol.versions): requests are fitted to its version."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self._exchanges: Exchanges | None = None

    def model_name(self, named: str | None, fallback: str = "default") -> str:
        """The model to ask a host of this type for, and to report when its answer names none: the host's
        configured `model`, else the one the request names, else `fallback`."""
        return self.config.model or named or fallback

    def can_serve(self, task: Task) -> bool:
        """`tasks`, plus reranking on a host configured with `rerank: true` (a server that also has a reranker),
        speech to text on one configured with `transcribe: true` and speech synthesis on one configured with
        `speak: true` (OpenAI-compatible speech servers)."""
        return (task in self.tasks or (task == "rerank" and self.config.rerank)
                or (task == "transcribe" and self.config.transcribe) or (task == "speak" and self.config.speak))

    def auth_headers(self, key: str | None) -> dict[str, str]:
        """The headers that carry `key` (none without a key)."""
        if not key:
            return {}
        if self.config.auth_header == "x-api-key":
            return {API_KEY_HEADER: key}
        return {AUTHORIZATION_HEADER: f"Bearer {key}"}

    # ------------------------------------------------------------------ health

    @abstractmethod
    def health_call(self) -> HttpCall: ...

    def health_calls(self) -> list[HttpCall]:
        """Where a health check asks, in order: the next is asked only when one answers 404 (a server
        that spells its paths another way, see openai.py)."""
        return [self.health_call()]

    def health_answered(self, call: HttpCall, response: httpx.Response) -> None:
        """A health check's `call` got `response` (the last one asked): where the host's routes are."""
        return None

    @property
    def paths_unknown(self) -> bool:
        """Whether the host's paths are still to be found by a health check (probed as it joins the pool)."""
        return False

    def paths(self) -> str | None:
        """The paths the host is called at and how they were chosen, where that can vary (--check shows it)."""
        return None

    def judge_health(self, response: httpx.Response) -> HealthVerdict:
        """A 200 serves if `_serves` agrees; a JSON body's status, device and problems are read."""
        body: Any = None
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                body = response.json()
            except ValueError:
                body = None  # unreadable: as if there were none
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        problems = fields.get("problems")
        problems = [str(p) for p in problems] if isinstance(problems, list) else []
        device = str(fields["device"]) if fields.get("device") else None
        status = fields.get("status")
        status = status if isinstance(status, str | int) else response.status_code
        if response.status_code != 200 or not self._serves(body):
            if response.status_code != 200:
                reason = f"HTTP {response.status_code}"
            else:
                reason = f"HTTP 200, status {status!r}" if fields else "HTTP 200 without a JSON health answer"
            return HealthVerdict("down", status, device, problems, reason=reason)
        return HealthVerdict("degraded" if problems else "ok", status, device, problems)

    def _serves(self, body: Any) -> bool:
        """Whether a 200 health answer with this body (parsed JSON, None if none) means the host serves."""
        return True

    # ------------------------------------------------------------------ work

    @abstractmethod
    def exchanges(self) -> Exchanges:
        """Per operation its hosts serve (mcp_bridge.protocols.exchange), how it is sent and its answer read."""

    def exchange(self, operation: Operation[Req, Ans]) -> Exchange[Req, Ans]:
        """`operation`'s exchange with this host (Unsupported when its hosts do not serve it: the pool never
        routes such a call). The table is built at the first call, from the methods as they are then."""
        if self._exchanges is None:
            self._exchanges = self.exchanges()
        found = self._exchanges.get(operation)
        if found is None:
            raise Unsupported(f"{self.type} hosts {operation.missing}")
        return found

    def sharing_headers(self, priority: Priority | None, tenant: str) -> dict[str, str]:
        """The headers that tell the host a request's class and tenant, so its own queues order it as the
        bridge does (docs/sharing.md). None for a server that is not a gpu-service: an OpenAI-compatible or
        TEI server has no use for them, and a client's name is not a third party's to see."""
        return {}

    def deadline_headers(self, seconds: float) -> dict[str, str]:
        """The headers that tell the host how long the bridge waits for this attempt's answer, so it refuses
        work it cannot finish in time (a 429 the pool retries elsewhere or passes on) instead of computing it
        for nobody. None for a server that is not a gpu-service."""
        return {}

    def cancel_call(self, request_id: str) -> HttpCall | None:
        """How to tell the host to drop the work of an abandoned request (sent with this
        `X-Request-Id`); None when it has no way (the connection closing is all it gets)."""
        return None

    # ------------------------------------------------------------------ views

    def info_call(self) -> HttpCall | None:
        """Where the host describes its device and models; None for hosts without."""
        return None

    def parse_info(self, response: httpx.Response) -> InfoResponse:
        raise Unsupported(f"{self.type} hosts have no /info")

    def status_call(self) -> HttpCall | None:
        """Where the host reports its queue and jobs; None for hosts without."""
        return None

    def parse_status(self, response: httpx.Response) -> StatusResponse:
        raise Unsupported(f"{self.type} hosts have no /status")
