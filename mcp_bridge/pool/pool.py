"""The host pool: pick a host, send, and on failure try a different one within one deadline.

Picking (only among hosts whose protocol serves the task and that serve the model the call names,
warm ones first: `routing.py`) is done by a balancing strategy (`balancing.py`). If no host is usable
(all ejected, unhealthy or cooling down) the pool panics: it tries them anyway rather than fail without trying.

What each attempt came to (answered, the host's failure, busy, the model's problem, a refusal) is
decided by `classify.py`; this module acts on it, keeping one call's attempts in `Attempts`.
Retries are capped by a budget (`retry_budget.py`) so a failing fleet is not hammered,
slow requests can be hedged (`hedging.py`), and everything happens inside the call's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from typing import TypeVar

import httpx

from gpu_protocol.routes import REQUEST_ID_HEADER
from mcp_bridge.config import BridgeConfig, HostConfig
from mcp_bridge.pool.attempts import Attempts
from mcp_bridge.pool.balancing import balancer
from mcp_bridge.pool.call_class import call_priority, current_class
from mcp_bridge.pool.classify import MAX_RETRY_AFTER_S, classify_answer, classify_error
from mcp_bridge.pool.errors import (
    Failure,
    HostFailed,
    HostRejected,
    NoHostAvailable,
    PoolBusy,
    PoolError,
    PoolTimeout,
)
from mcp_bridge.pool.gate import SlotGate
from mcp_bridge.pool.hedging import send_hedged
from mcp_bridge.pool.hosts import Clock, Host
from mcp_bridge.pool.retry_budget import RetryBudget
from mcp_bridge.pool.routing import Need, best, candidates, cannot_serve, no_type_serves, note
from mcp_bridge.pool.versioning import note_answer
from mcp_bridge.pool.views import PoolView
from mcp_bridge.protocols import HttpCall, Task
from mcp_bridge.protocols.answers import BadResponse
from mcp_bridge.protocols.exchange import Ans, Operation, Req

log = logging.getLogger("mcp_bridge.pool")
T = TypeVar("T")

CallFor = Callable[[Host], HttpCall]
"""The request for a host (its protocol builds it)."""
ParseFor = Callable[[Host, httpx.Response], T]
"""The result from a host's answer (its protocol parses and checks it; BadResponse if it does not fit)."""


class HostPool:
    def __init__(
        self,
        config: BridgeConfig,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.strategy = config.loadBalancing
        self.clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._transport = transport
        self.hosts: list[Host] = [
            Host(h, config, clock, self._rng, transport) for h in config.pool_hosts() if not h.discover
        ]
        """Replaced, never changed in place (hosts found by DNS come and go while requests run)."""
        self._retiring: set[asyncio.Task[None]] = set()
        self._balancer = balancer(self.strategy, self._rng)
        self.budget = RetryBudget(config.retryBudgetPercent / 100, clock)
        self._capacity = asyncio.Condition()
        """Notified as requests end (a removed host is closed once its last one has)."""
        self.gate = SlotGate(clock, config.shardSize)
        """Where requests wait for a host slot, in fair order (fair_share.py)."""
        self.panics = 0
        self.hedges = 0
        self._aborts: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ picking

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise PoolError(f"no host named {name!r}; configured: {', '.join(h.name for h in self.hosts)}")

    def pick(self, task: Task, exclude: AbstractSet[str] = frozenset(), model: str | None = None) -> Host | None:
        """The next host for `task` (and `model`: warm hosts first, routing.py), or None if every
        candidate is excluded or full."""
        now = self.clock()
        need = Need(task, model)
        able = [h for h in candidates(self.hosts, need) if h.name not in exclude and h.has_capacity()]
        priority = call_priority()
        usable = [h for h in able if h.usable(now, priority)]
        if not usable:
            if not able:
                return None
            self.panics += 1  # panic: everything is out; trying beats failing without trying
            return min(able, key=lambda h: h.out_until(priority))
        return self._balancer.choose(best(usable, need))

    def _able(self, task: Task) -> list[Host]:
        return [h for h in self.hosts if h.can_serve(task)]

    # ------------------------------------------------------------------ hosts that come and go (DNS discovery)

    def add_host(self, entry: HostConfig, *, name: str, url: str) -> Host:
        """A host found for `entry` (its settings, its own name and address) joins the pool."""
        host = Host(entry, self.config, self.clock, self._rng, self._transport, name=name, url=url, origin=entry.label)
        self.hosts = [*self.hosts, host]
        return host

    def remove_host(self, host: Host) -> None:
        """`host` leaves the pool: no new requests; those in flight finish, then its client is closed."""
        self.hosts = [h for h in self.hosts if h is not host]
        task = asyncio.get_running_loop().create_task(self._retire(host))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, host: Host) -> None:
        try:
            async with self._capacity:
                await self._capacity.wait_for(lambda: host.record.in_flight == 0)
        finally:
            await host.close()

    # ------------------------------------------------------------------ sending

    async def send(self, operation: Operation[Req, Ans], request: Req, *, deadline: float, pin: str | None = None,
                   prefer: str | None = None) -> tuple[Ans, Host]:
        """`request` for `operation` (`request` below), through each host's exchange for it, for the model it names."""
        return await self.request(
            operation.task, lambda h: h.protocol.exchange(operation).request(request),
            lambda h, r: h.protocol.exchange(operation).answer(r, request),
            deadline=deadline, pin=pin, prefer=prefer, model=operation.model_of(request),
            items=operation.size_of(request))

    async def request(
        self, task: Task, call: CallFor, parse: ParseFor[T], *, deadline: float, pin: str | None = None,
        model: str | None = None, prefer: str | None = None, items: int = 1,
    ) -> tuple[T, Host]:
        """Send `call(host)` to one host after another (those that serve `model`, routing.py) until
        `parse(host, answer)` accepts an answer, the deadline passes, or a host refuses the request (4xx).
        `prefer`: the first attempt's host if usable with room (a sharded call's dispatch chooses it);
        the balancer picks the others. `items`: the request's size, as the fair share of slots counts it."""
        need = Need(task, model)
        state = Attempts(need, self._candidates(need, pin), deadline, pin, prefer=prefer, items=items)
        self.budget.record_request()
        try:
            return await self._until_answered(state, call, parse)
        except (NoHostAvailable, PoolTimeout) as exc:
            if isinstance(exc, PoolBusy):
                self.gate.refused(current_class.get())
            why = None if pin else note(self.hosts, need)
            if why:
                exc.args = (f"{exc}; {why}",)
            raise
        finally:
            state.leave_gate(self.gate)

    async def _until_answered(self, state: Attempts, call: CallFor, parse: ParseFor[T]) -> tuple[T, Host]:
        while True:
            host = await self._next_host(state, call)
            if host is None:
                continue
            sent = await self._attempt(state, host, call)
            if sent is None:
                continue
            response, host = sent
            try:
                return parse(host, response), host
            except BadResponse as exc:
                # It would answer the same again: not retried on this host for the rest of the call.
                self._failed(state, host, Failure(f"malformed answer: {exc}"))
                state.out.add(host, "malformed answer")

    def _candidates(self, need: Need, pin: str | None) -> list[Host]:
        """The hosts that may serve `need` (the pinned one only), or why there are none."""
        task = need.task
        if pin:
            pinned = self.host(pin)
            if not pinned.can_serve(task):
                raise PoolError(f"host {pin!r} is a {pinned.protocol.type} host and cannot serve {task}")
            return [pinned]
        if not self.hosts:
            raise NoHostAvailable(f"no host to serve {task}: DNS discovery has found no address yet")
        if not self._able(task):
            raise NoHostAvailable(no_type_serves(self.hosts, task))
        able = candidates(self.hosts, need)
        if not able:
            raise NoHostAvailable(cannot_serve(self.hosts, need))
        return able

    async def _next_host(self, state: Attempts, call: CallFor) -> Host | None:
        """The host for the next attempt, its request fitted to its protocol version; None after waiting
        (for capacity, or before another round) or when the host picked cannot take the request."""
        if state.out_of_time(self.clock()):
            state.raise_if_busy(self.clock())
            raise PoolTimeout(state.summary(f"{state.task} did not finish within the deadline"))
        if not state.pin:  # routing may have learnt since the call began that some of its hosts lack the model
            state.able = candidates(state.able, state.need)
            if not state.able:
                raise state.refusal or NoHostAvailable(cannot_serve(self.hosts, state.need))
        state.out.raise_if_all(state.able, state.task, state.errors)
        out = state.tried | state.out.names
        host = self.host(state.pin) if state.pin else (
            state.take_handed(self.gate, self.clock()) or state.preferred(self.clock())
            or self.pick(state.task, exclude=out, model=state.need.model))
        if host is not None:
            state.leave_gate(self.gate)
        if host is not None and not state.out.fit(host, call, state.calls, state.errors):
            return None
        if host is None:
            await self._wait_for_a_host(state)
            return None
        if not state.first and not self.budget.try_spend():
            state.raise_if_busy(self.clock())
            raise NoHostAvailable(state.summary(f"{state.task} failed and the retry budget is spent"))
        state.first = False
        state.note_tried(host)
        self.gate.sent(current_class.get(), state.items)
        if host.cluster and host is state.previous:
            await self._backoff([host], state.deadline)  # the same proxy again: not in a tight loop
        state.previous = host
        return host

    async def _wait_for_a_host(self, state: Attempts) -> None:
        """No host to pick: every one tried this round (back off, then go round again) or all full."""
        able = {h.name for h in state.able}
        if len((state.tried | state.out.names) & able) < len(able):
            await state.wait_for_slot(self.gate, current_class.get(), self.clock)
            return
        if not self.budget.try_spend():
            state.raise_if_busy(self.clock())
            raise NoHostAvailable(state.summary(f"every host failed {state.task} (retry budget spent)"))
        state.raise_if_busy_past_deadline(self.clock())
        await self._backoff(state.able, state.deadline)
        state.tried.clear()

    async def _attempt(self, state: Attempts, host: Host, call: CallFor) -> tuple[httpx.Response, Host] | None:
        """One attempt on `host` (hedged on a second host when configured): the answer and the host that
        gave it, or None after a failure that was recorded (and, for a pinned host, waited out)."""

        def send(h: Host) -> Awaitable[httpx.Response]:
            return self._send(h, state.calls[h.name], state.deadline, state.need)

        try:
            if self.config.hedging and not state.pin:
                return await send_hedged(host, send, lambda: self._backup(state, call, host), self._account)
            return await send(host), host
        except HostFailed as failed:
            self._failed(state, failed.host or host, failed.failure)
            if state.pin:
                await self._retry_pinned(state)
            return None
        except HostRejected as rejected:
            if not rejected.refused_model or not self._learn_refusal(state, rejected) or state.pin:
                raise
            return None

    def _learn_refusal(self, state: Attempts, rejected: HostRejected) -> bool:
        """A host refused the call's model: routing learns it, which leaves the host out of this call too
        (`_next_host`), and the call moves on. False when the host is not one of the call's."""
        host = next((h for h in state.able if h.name == rejected.host), None)
        if host is None or state.need.model is None:
            return False
        host.described.refuse(state.task, state.need.model)
        state.refusal = rejected
        state.failed(host, Failure(f"HTTP 403: {rejected.detail}", kind="model"))
        log.info("host %s refused model %r: %s", host.name, state.need.model, rejected.detail)
        return True

    def _backup(self, state: Attempts, call: CallFor, primary: Host) -> Host | None:
        """A second host for a hedged attempt, if one is usable now and can take the request. For an attempt
        on a cluster host with no other host to take it, the same proxy again: it routes the copy to another
        replica (the one holding the first may have died with the request, as a killed Ray replica does)."""
        second = self.pick(state.task, exclude=state.tried | state.out.names, model=state.need.model)
        if second is None and primary.cluster:
            second = primary  # even while ejected: it is the one being tried (panic mode) and may hold live replicas
        if second is None or not (second is primary or second.usable(self.clock(), call_priority())):
            return None
        if not state.out.fit(second, call, state.calls, state.errors):
            return None
        state.note_tried(second)
        self.hedges += 1
        return second

    async def _retry_pinned(self, state: Attempts) -> None:
        """A pinned host failed: try it again shortly, within the deadline and the retry budget."""
        if self.clock() >= state.deadline or not self.budget.try_spend():
            raise PoolError(state.summary(f"pinned host {state.pin!r} failed {state.task}")) from None
        await self._sleep(min(0.2, max(0.0, state.deadline - self.clock())))

    def _failed(self, state: Attempts, host: Host, failure: Failure) -> None:
        if failure.kind == "model":  # that model's problem there, not the host's: out of this call
            state.out.add_model_failure(host, failure.message)
        state.failed(host, failure)
        self._account(host, failure)

    async def _send(self, host: Host, call: HttpCall, deadline: float, need: Need) -> httpx.Response:
        """One request to `host`: its answer, else HostFailed or HostRejected as classify.py decides."""
        chosen = current_class.get()
        host.request_started(chosen)
        started = self.clock()
        request_id = uuid.uuid4().hex
        timeout = max(0.05, min(host.timeout, deadline - started))
        sharing = host.protocol.sharing_headers(chosen.told_priority, chosen.tenant) if chosen else {}
        sharing.update(host.protocol.deadline_headers(timeout))
        try:
            response = await host.client.request(
                call.method, call.path, json=call.json, files=call.files, data=call.data, timeout=timeout,
                headers={REQUEST_ID_HEADER: request_id, **sharing},
            )
        except asyncio.CancelledError:
            # Abandoned (the agent cancelled, a hedge won, a shard failed): tell the host,
            # so it drops the work instead of computing an answer nobody reads.
            self._abort_remote(host, request_id)
            raise
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                self._abort_remote(host, request_id)  # it must not keep computing what we retry elsewhere
            raise HostFailed(classify_error(exc, timeout)) from None
        finally:
            host.request_finished(chosen)
            self.gate.freed(host)
            async with self._capacity:
                self._capacity.notify_all()
        note_answer(host, response)
        outcome = classify_answer(response, host, need)
        if outcome is None:
            host.succeeded(self.clock() - started)
            return response
        if isinstance(outcome, HostRejected):
            host.rejected(f"HTTP {outcome.status}: {outcome.detail}")
            raise outcome
        raise HostFailed(outcome)

    def _abort_remote(self, host: Host, request_id: str) -> None:
        cancel = host.protocol.cancel_call(request_id)
        if cancel is None:
            return

        async def abort() -> None:
            try:
                await host.client.request(cancel.method, cancel.path, json=cancel.json, timeout=2.0)
            except httpx.HTTPError:
                pass  # best effort: the host's deadline ends the work anyway

        task = asyncio.get_running_loop().create_task(abort())
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    def _account(self, host: Host, failure: Failure) -> None:
        if failure.kind == "host":
            host.failed(failure.message)
        elif failure.kind == "model":
            host.rejected(failure.message)
        elif not failure.too_late:  # too late for this call only: the next call may fit, the host decides
            host.cool_down(failure, current_class.get())
        log.info("host %s: %s", host.name, failure.message)

    async def _backoff(self, hosts: list[Host], deadline: float) -> None:
        now = self.clock()
        waits = [h.cooling_left(now, call_priority()) for h in hosts if h.cooling(now, call_priority())]
        delay = min(waits) if waits and len(waits) == len(hosts) else self._rng.uniform(0.05, 0.25)
        await self._sleep(max(0.0, min(delay, deadline - now, MAX_RETRY_AFTER_S)))

    def snapshot(self) -> PoolView:
        now = self.clock()
        usable = [h for h in self.hosts if h.usable(now)]
        return PoolView(
            strategy=self.strategy,
            mode="normal" if usable else "panic",
            hosts=[h.view(now) for h in self.hosts],
            panics=self.panics,
            hedges=self.hedges,
            sharing=self.gate.view(),
        )

    async def close(self) -> None:
        if self._aborts:  # give pending cancel notices a moment, never forever
            _, pending = await asyncio.wait(set(self._aborts), timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in list(self._retiring):  # removed hosts still finishing: close them now
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await asyncio.gather(*(h.close() for h in self.hosts))
