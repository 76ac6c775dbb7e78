"""One pool request's attempts: the hosts it may use, those tried this round, and what failed."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpu_protocol.priority import Priority
from mcp_bridge.pool.call_class import CallClass, call_priority
from mcp_bridge.pool.errors import Failure, HostRejected, PoolBusy
from mcp_bridge.pool.gate import Place, SlotGate, slot_watcher
from mcp_bridge.pool.hosts import Clock, Host
from mcp_bridge.pool.out_for_call import OutForCall
from mcp_bridge.pool.routing import Need
from mcp_bridge.protocols import HttpCall, Task

MIN_RETRY_S = 0.5
"""An attempt after the first needs at least this long before the call's deadline."""


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
    too_late: dict[str, float] = field(default_factory=dict)
    """Hosts that said the call would not finish there within its wait (not waited for again), and when a call
    with a whole wait would (their Retry-After). They are not cooled down: the next call may fit."""
    first: bool = True
    previous: Host | None = None
    out: OutForCall = field(default_factory=OutForCall)
    """Hosts that cannot serve this call at all (a malformed answer, too old a protocol version)."""
    calls: dict[str, HttpCall] = field(default_factory=dict)
    """Each host's request, built once and fitted to its protocol version."""
    refusal: HostRejected | None = None
    """The last host's refusal of the call's model (403): the call's answer once no host is left."""
    items: int = 1
    """Its size (texts, documents, pairs): what the fair share of host slots counts (fair_share.py)."""
    place: Place | None = None
    """Its place in the pool's waiting room for a host slot, while it has one (gate.py)."""
    handed: Host | None = None
    """The host the waiting room handed it (that host's slot is held for its next attempt)."""
    waited: bool = False
    """It has waited in the waiting room since it last had a host."""
    priority: Priority | None = field(default_factory=call_priority)
    """Its call's class (the current one when it starts): a host cooling down for batch calls only is still of
    use to an interactive one. Kept here, as the slot gate asks `fits` in the context of whichever request
    freed the slot."""

    async def wait_for_slot(self, gate: SlotGate, call_class: CallClass | None, clock: Clock) -> None:
        """Wait in the slot gate (a second at most, keeping the place) for a host it hands over (`handed`)."""
        if self.place is None:
            self.place = gate.join(call_class, self.items, lambda h: self.fits(h, clock()))
            if not self.waited and (watcher := slot_watcher.get()) is not None:
                watcher.waiting()
            self.waited = True
        self.handed = await gate.wait(self.place, max(0.01, min(1.0, self.deadline - clock())))
        if self.handed is not None:
            self.place = None

    def take_handed(self, gate: SlotGate, now: float) -> Host | None:
        """The host the gate handed this request, if still of use (else its slot goes to the next waiter)."""
        host, self.handed = self.handed, None
        if host is not None and not self.fits(host, now):
            gate.freed(host)
            return None
        return host

    def leave_gate(self, gate: SlotGate) -> None:
        """Out of the waiting room: it has a host (or its call ended)."""
        if self.place is not None:
            gate.leave(self.place)
            self.place = None
        if self.waited and (watcher := slot_watcher.get()) is not None:
            watcher.admitted()
        self.waited = False

    def fits(self, host: Host, now: float) -> bool:
        """Whether a freed slot on `host` is of use to this request now (the slot gate asks)."""
        return (host.name not in self.tried and host.name not in self.out.names and host.usable(now, self.priority)
                and any(h is host for h in self.able))

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
        return host if host is not None and host.usable(now, self.priority) and host.has_capacity() else None

    @property
    def task(self) -> Task:
        return self.need.task

    def failed(self, host: Host, failure: Failure) -> None:
        self.errors.append(f"{host.name}: {failure.message}")
        self.busy_only = self.busy_only and failure.busy
        if failure.too_late:
            self.too_late[host.name] = failure.retry_after or 1.0

    def raise_if_busy(self, now: float) -> None:
        """Out of time or retries, and every host only said it was busy: that is overload (PoolBusy), not failure."""
        if not (self.busy_only and self.errors):
            return
        soonest = min((self.too_late.get(h.name) or h.cooling_left(now, self.priority) for h in self.able),
                      default=0.0)  # 0: one is neither cooling nor too late
        retry_after = max(1.0, soonest)
        raise PoolBusy(self.summary("every host is busy"), retry_after)

    def out_of_time(self, now: float) -> bool:
        """No time for another attempt: the deadline has passed, or one after the first would have under
        `MIN_RETRY_S` (it could not be answered, and its timeout would count against a host that did no wrong)."""
        left = self.deadline - now
        return left <= 0 or (left < MIN_RETRY_S and not self.first)

    def raise_if_busy_past_deadline(self, now: float) -> None:
        """Every host only said it was busy, and each cools down for longer than the call has left or said the
        call would not finish there in time: say so now, as `raise_if_busy` would at the deadline, rather than
        wait for nothing."""
        left = self.deadline - now
        if all(h.name in self.too_late or h.cooling_left(now, self.priority) >= left for h in self.able):
            self.raise_if_busy(now)

    def summary(self, message: str) -> str:
        """`message`, with the last few failures (and how many came before)."""
        if not self.errors:
            return message
        shown = self.errors[-4:]
        more = f" (+{len(self.errors) - len(shown)} earlier)" if len(self.errors) > len(shown) else ""
        return f"{message}: " + "; ".join(shown) + more
