"""One GPU host as the pool sees it: its settings, its protocol, its HTTP client, and its health record.

All the state a balancing or ejection decision reads lives here, and is read and changed
only through the small methods below (no other module touches `record`), so the state
machine is easy to follow:

    healthy ──N consecutive failures──▶ ejected (until T, growing with each ejection)
       ▲                                    │
       └──── passing health probe ◀─────────┘
    healthy ──M failed probes──▶ unhealthy ──K passing probes──▶ healthy
    429/503 + Retry-After ──▶ cooling down until then (not a failure)
    429 to a batch call   ──▶ cooling down for batch calls only (its batch queue is full; interactive has its own)

A host whose /health says `degraded` (a default model failed to load there) stays
usable: it serves the models it has. A call that needs the missing model is not sent
there (its /info lists the model as failed, mcp_bridge.pool.routing), and nothing it
lacks counts toward its ejection. Its state reads `degraded` and the reasons are kept in `problems`, so gpu_status,
gpu_health and `gpu-bridge --check` show them.
"""

from __future__ import annotations

import collections
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from gpu_protocol.priority import Priority
from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.status import StatusResponse
from gpu_protocol.versions import PROTOCOL_VERSION
from mcp_bridge.config import BridgeConfig, HostConfig
from mcp_bridge.pool.call_class import CallClass
from mcp_bridge.pool.errors import Failure
from mcp_bridge.pool.routing import served_models
from mcp_bridge.pool.versioning import HostDescription
from mcp_bridge.pool.views import HostState, HostView
from mcp_bridge.protocols import HostProtocol, Task, protocol_for

Clock = Callable[[], float]

CLUSTER_FAILURE_FACTOR = 3
"""A `cluster` host (a proxy for many replicas) is ejected only after this many times
`failureThreshold` failures in a row: one bad replica behind it must not take out the rest."""


@dataclass(frozen=True)
class Rate:
    """A host's measured seconds per item for one kind of call, and when it was measured (pool clock)."""

    seconds: float
    measured_at: float


@dataclass
class HostRecord:
    """Counters and timestamps; everything `gpu_status` shows."""

    in_flight: int = 0
    in_flight_by_class: collections.Counter[tuple[Priority, str] | None] = field(default_factory=collections.Counter)
    """`in_flight` per (class, tenant) of the calls they serve (None: work no call classed, e.g. a probe)."""
    reserved: int = 0
    """Slots held for a shard the slot gate handed this host to, until it sends (gate.py)."""
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    cooldown_until: float = 0.0
    batch_cooldown_until: float = 0.0
    """Until when batch calls leave it alone: it refused one (429) because its batch queue was full."""
    healthy: bool = True
    probe_failures: int = 0
    probe_successes: int = 0
    last_error: str | None = None
    served: int = 0
    failed: int = 0
    ewma_latency_s: float | None = None
    item_seconds: dict[str, Rate] = field(default_factory=dict)
    """Seconds per item while kept busy, per kind of call and model (an idf count is not a BERTScore), as
    sharded calls measured it: their dispatch places shards by it."""
    latencies: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=200))
    remote_queue_depth: int = 0
    """Items the host itself reports queued (from /status), from every client, not only us."""
    problems: list[str] = field(default_factory=list)
    """What the host reports missing while it serves degraded (from /health)."""


class Host:
    def __init__(
        self,
        config: HostConfig,
        pool_config: BridgeConfig,
        clock: Clock,
        rng: random.Random,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        name: str | None = None,
        url: str | None = None,
        origin: str | None = None,
    ):
        self.config = config
        self.name = name or config.label
        self.url = url or config.url
        self.origin = origin
        """The config entry this host was discovered from (DNS discovery); None for a configured host."""
        self.cluster = config.cluster
        self.protocol: HostProtocol = protocol_for(config)
        self.weight = config.weight
        self.max_concurrent = config.maxConcurrent
        self.timeout = config.timeout or pool_config.timeout
        self._pool_config = pool_config
        self._clock = clock
        self._rng = rng
        self.record = HostRecord()
        self.described = HostDescription()
        """Its protocol version and models per task, as it last stated them (versioning.py)."""
        self.client = httpx.AsyncClient(
            base_url=self.url,
            headers={**self.protocol.auth_headers(pool_config.key_for(config)), PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
            verify=_verify(config),
            timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport,
        )

    def __repr__(self) -> str:  # never shows the key
        return f"Host({self.name!r}, {self.url!r})"

    # ------------------------------------------------------------------ state

    def can_serve(self, task: Task) -> bool:
        return self.protocol.can_serve(task)

    def ejected(self, now: float) -> bool:
        return now < self.record.ejected_until

    def cooling(self, now: float, priority: Priority | None = None) -> bool:
        """Cooling down for calls of `priority` (None: the host as a whole, for probes and its state)."""
        return now < self._cool_until(priority)

    def _cool_until(self, priority: Priority | None) -> float:
        if priority == "batch":
            return max(self.record.cooldown_until, self.record.batch_cooldown_until)
        return self.record.cooldown_until

    def usable(self, now: float, priority: Priority | None = None) -> bool:
        """Healthy, not ejected, not cooling down for calls of `priority`. (Capacity is checked separately.)"""
        return self.record.healthy and not self.ejected(now) and not self.cooling(now, priority)

    def has_capacity(self) -> bool:
        return self.max_concurrent is None or self.record.in_flight + self.record.reserved < self.max_concurrent

    def reserve(self) -> None:
        self.record.reserved += 1

    def unreserve(self) -> None:
        self.record.reserved = max(0, self.record.reserved - 1)

    def out_until(self, priority: Priority | None = None) -> float:
        """When the host is usable again for calls of `priority` as far as ejection and cool-down go (panic mode)."""
        return max(self.record.ejected_until, self._cool_until(priority))

    def cooling_left(self, now: float, priority: Priority | None = None) -> float:
        return max(0.0, self._cool_until(priority) - now)

    def state(self, now: float) -> HostState:
        if self.ejected(now):
            return "ejected"
        if not self.record.healthy:
            return "unhealthy"
        if self.cooling(now):
            return "cooling-down"
        return "degraded" if self.record.problems else "healthy"

    def note_problems(self, problems: list[str]) -> bool:
        """What a passing health probe says is missing (none when healthy); True if that changed."""
        changed = problems != self.record.problems
        self.record.problems = list(problems)
        return changed

    def load(self) -> float:
        """What least-busy minimises: outstanding work per unit of weight.

        Our own in-flight requests, plus the host's reported queue in request-sized units
        (a shard's worth of items counts as one request), so other clients' work counts too."""
        queued = self.record.remote_queue_depth / self._pool_config.shardSize
        return (self.record.in_flight + queued) / self.weight

    def note_status(self, status: StatusResponse) -> None:
        self.record.remote_queue_depth = status.queue_depth

    def ahead_of(self, chosen: CallClass | None) -> int:
        """Requests in flight here that one more of a call of `chosen` class would wait behind: all of them at
        a host that serves first come, first served; at one that queues by class and tenant, those of its own
        class and tenant, and for a batch call the interactive ones too (they go first). Another tenant's
        requests of its class share the host in turn with it, not ahead of it (gpu_service/scheduling/lanes.py)."""
        rec = self.record
        if chosen is None or not self.described.queues_by_class:
            return rec.in_flight
        ahead = rec.in_flight_by_class[(chosen.priority, chosen.tenant)]
        if chosen.priority == "batch":
            ahead += sum(n for lane, n in rec.in_flight_by_class.items() if lane and lane[0] == "interactive")
        return ahead

    # ------------------------------------------------------------------ outcomes

    def request_started(self, chosen: CallClass | None = None) -> None:
        self.record.in_flight += 1
        self.record.in_flight_by_class[(chosen.priority, chosen.tenant) if chosen else None] += 1

    def request_finished(self, chosen: CallClass | None = None) -> None:
        self.record.in_flight -= 1
        lane = (chosen.priority, chosen.tenant) if chosen else None
        self.record.in_flight_by_class[lane] -= 1
        if self.record.in_flight_by_class[lane] <= 0:
            del self.record.in_flight_by_class[lane]

    def succeeded(self, latency_s: float) -> None:
        rec = self.record
        rec.consecutive_failures = 0
        rec.served += 1
        rec.latencies.append(latency_s)
        rec.ewma_latency_s = latency_s if rec.ewma_latency_s is None else 0.8 * rec.ewma_latency_s + 0.2 * latency_s

    def failed(self, error: str) -> None:
        """A connect error, timeout, 5xx or garbage answer: counts towards ejection."""
        rec = self.record
        rec.failed += 1
        rec.consecutive_failures += 1
        rec.last_error = error
        cfg = self._pool_config
        if rec.consecutive_failures >= self.failure_threshold() and not self.ejected(self._clock()):
            rec.ejections += 1
            base = min(cfg.ejectionSeconds * rec.ejections, cfg.maxEjectionSeconds)
            rec.ejected_until = self._clock() + base * self._rng.uniform(0.9, 1.1)
            rec.consecutive_failures = 0

    def failure_threshold(self) -> int:
        """Consecutive failures that eject this host."""
        factor = CLUSTER_FAILURE_FACTOR if self.cluster else 1
        return self._pool_config.failureThreshold * factor

    def rejected(self, error: str) -> None:
        """A 4xx: the caller's problem, not held against the host, but shown as its last error."""
        self.record.last_error = error

    def cool_down(self, busy: Failure, call_class: CallClass | None = None) -> None:
        """Busy (429/503, with a Retry-After or 1 s): leave it alone that long; not a failure. A 429 to a call
        this host was told is batch (X-GPU-Priority) says its batch queue is full: batch calls leave it alone,
        interactive ones, which have a queue and a cap of their own there, still go."""
        until = self._clock() + (busy.retry_after or 1.0)
        told = call_class.told_priority if call_class else None
        if busy.status == 429 and told == "batch" and self.protocol.sharing_headers(told, ""):
            self.record.batch_cooldown_until = max(self.record.batch_cooldown_until, until)
        else:
            self.record.cooldown_until = max(self.record.cooldown_until, until)
        self.record.last_error = busy.message

    def probe_passed(self) -> None:
        rec = self.record
        rec.probe_failures = 0
        rec.probe_successes += 1
        if not rec.healthy and rec.probe_successes >= self._pool_config.healthyThreshold:
            rec.healthy = True
        if rec.healthy and self.ejected(self._clock()):
            rec.ejected_until = 0.0  # a passing probe ends an ejection
            rec.consecutive_failures = 0

    def probe_failed(self, error: str) -> None:
        rec = self.record
        rec.probe_successes = 0
        rec.probe_failures += 1
        rec.last_error = error
        if rec.probe_failures >= self._pool_config.unhealthyThreshold:
            rec.healthy = False

    def p95_latency(self) -> float | None:
        values = sorted(self.record.latencies)
        if len(values) < 20:
            return None
        return values[int(0.95 * (len(values) - 1))]

    def view(self, now: float) -> HostView:
        rec = self.record
        return HostView(
            name=self.name,
            url=self.url,
            type=self.protocol.type,
            origin=self.origin,
            state=self.state(now),
            ejected_for_s=round(rec.ejected_until - now, 1) if self.ejected(now) else None,
            batch_cooling_s=round(rec.batch_cooldown_until - now, 1) if now < rec.batch_cooldown_until else None,
            in_flight=rec.in_flight,
            weight=self.weight,
            ewma_latency_ms=round(rec.ewma_latency_s * 1000, 1) if rec.ewma_latency_s is not None else None,
            consecutive_failures=rec.consecutive_failures,
            ejections=rec.ejections,
            last_error=rec.last_error,
            problems=list(rec.problems),
            models=served_models(self),
            served=rec.served,
            failed=rec.failed,
        )

    async def close(self) -> None:
        await self.client.aclose()


def _verify(config: HostConfig) -> bool | ssl.SSLContext:
    tls = config.tls
    if tls is None:
        return True
    if not tls.verify:
        return False
    if tls.caBundle:
        return ssl.create_default_context(cafile=tls.caBundle)
    return True
