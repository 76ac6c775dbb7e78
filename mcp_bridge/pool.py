"""The host pool: pick a host, send, and on failure try a different one within one deadline.

Picking (only among hosts that can do the task):
- round-robin: smooth weighted round-robin over usable hosts (nginx's algorithm);
- least-busy: fewest outstanding requests per unit of weight, ties broken at random,
  power-of-two-choices above 8 hosts.
If no host is usable (all ejected, unhealthy or cooling down) the pool panics: it
tries them anyway rather than fail without trying.

Outcomes:
- connect errors, timeouts, 5xx and malformed answers count against the host
  (ejection after `failureThreshold` in a row) and are retried on another host;
- 429/503 with Retry-After cool the host down for that long and are retried elsewhere;
- 400/401/403/404/413/422 are the caller's problem: never retried, never held
  against the host, reported with the host's name and its reason.
Retries are capped by a budget (a share of recent requests plus a small floor) so a
failing fleet is not hammered, and everything happens inside the call's deadline.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from mcp_bridge.answers import BadResponse, describe_malformed, describe_transport_error, error_detail
from mcp_bridge.answers import parse_json as parse_json  # re-exported: callers read answers with it
from mcp_bridge.config import BridgeConfig
from mcp_bridge.hosts import Clock, Host

log = logging.getLogger("mcp_bridge.pool")
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0


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
class _Failure:
    message: str
    retry_after: float | None = None
    counts: bool = True
    """Whether it counts against the host (busy answers do not)."""


class RetryBudget:
    """Retries allowed in the last `window` seconds: `ratio` of the requests plus a floor of
    `min_per_s` per second (Finagle's defaults: 20%, 10/s, 10 s).

    The floor lets a burst through when one host dies with many requests in flight (they
    all need a new host at once); the ratio stops a storm when every host is failing."""

    def __init__(self, ratio: float, clock: Clock, window: float = 10.0, min_per_s: float = 10.0) -> None:
        self.ratio = ratio
        self.window = window
        self.floor = int(min_per_s * window)
        self._clock = clock
        self._requests: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()

    def _trim(self) -> None:
        edge = self._clock() - self.window
        for q in (self._requests, self._retries):
            while q and q[0] < edge:
                q.popleft()

    def record_request(self) -> None:
        self._requests.append(self._clock())

    def try_spend(self) -> bool:
        self._trim()
        if len(self._retries) < self.floor + self.ratio * len(self._requests):
            self._retries.append(self._clock())
            return True
        return False


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, min(float(raw), MAX_RETRY_AFTER_S))
    except ValueError:
        return None


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
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.hosts = [Host(h, config, clock, self._rng, transport) for h in config.pool_hosts()]
        self._rr_weight = {h.name: 0.0 for h in self.hosts}
        self.budget = RetryBudget(config.retryBudgetPercent / 100, clock)
        self._capacity = asyncio.Condition()
        self.panics = 0
        self.hedges = 0
        self._aborts: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ picking

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise PoolError(f"no host named {name!r}; configured: {', '.join(h.name for h in self.hosts)}")

    def pick(self, task: str, exclude: set[str] = frozenset()) -> Host | None:  # type: ignore[assignment]
        """The next host for `task`, or None if every candidate is excluded or full."""
        now = self._clock()
        able = [h for h in self.hosts if h.can_serve(task) and h.name not in exclude and h.has_capacity()]
        usable = [h for h in able if h.usable(now)]
        if not usable:
            if not able:
                return None
            # Panic: everything is out; trying beats failing without trying.
            self.panics += 1
            soonest = min(able, key=lambda h: max(h.record.ejected_until, h.record.cooldown_until))
            return soonest
        if self.strategy == "round-robin":
            return self._weighted_round_robin(usable)
        return self._least_busy(usable)

    def _weighted_round_robin(self, hosts: list[Host]) -> Host:
        total = sum(h.weight for h in hosts)
        for h in hosts:
            self._rr_weight[h.name] += h.weight
        chosen = max(hosts, key=lambda h: self._rr_weight[h.name])
        self._rr_weight[chosen.name] -= total
        return chosen

    def _least_busy(self, hosts: list[Host]) -> Host:
        if len(hosts) > 8:
            hosts = self._rng.sample(hosts, 2)  # power of two choices
        best = min(h.load() for h in hosts)
        return self._rng.choice([h for h in hosts if h.load() == best])

    def _able(self, task: str) -> list[Host]:
        return [h for h in self.hosts if h.can_serve(task)]

    # ------------------------------------------------------------------ sending

    async def request(
        self,
        task: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        deadline: float,
        parse: Callable[[httpx.Response], T] | None = None,
        pin: str | None = None,
        path_for: Callable[[Host], tuple[str, Any]] | None = None,
        parse_for: Callable[[Host, httpx.Response], T] | None = None,
    ) -> tuple[T, Host]:
        """Send to one host after another until one answers well, the deadline passes, or a 4xx.

        `parse` (or `parse_for`, when the answer's shape depends on the host's type) turns a
        response into the result; raising BadResponse/ValueError there marks the host failed."""
        if (parse is None) == (parse_for is None):
            raise TypeError("give exactly one of parse and parse_for")
        able = [self.host(pin)] if pin else self._able(task)
        if pin and not able[0].can_serve(task):
            raise PoolError(f"host {pin!r} is a {able[0].kind} host and cannot serve {task}")
        if not able:
            raise NoHostAvailable(f"no configured host can serve {task} (openai/tei hosts serve embeddings only)")
        self.budget.record_request()
        tried: set[str] = set()
        errors: list[str] = []
        busy_only = True  # every failure so far was a busy answer
        first = True
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._raise_if_busy(busy_only, able, errors)
                raise PoolTimeout(self._summary(f"{task} did not finish within the deadline", errors))
            host = self.host(pin) if pin else self.pick(task, exclude=tried)
            if host is None:
                if len(tried) >= len(able):
                    # Every host tried once this round: back off, then go round again.
                    if not self.budget.try_spend():
                        self._raise_if_busy(busy_only, able, errors)
                        raise NoHostAvailable(self._summary(f"every host failed {task} (retry budget spent)", errors))
                    await self._backoff(able, deadline)
                    tried.clear()
                    continue
                await self._wait_for_capacity(deadline)
                continue
            if not first and not self.budget.try_spend():
                self._raise_if_busy(busy_only, able, errors)
                raise NoHostAvailable(self._summary(f"{task} failed and the retry budget is spent", errors))
            first = False
            tried.add(host.name)

            def send(h: Host) -> Awaitable[httpx.Response]:
                req_path, body = path_for(h) if path_for else (path, json_body)
                return self._send(h, method, req_path, body, deadline)

            try:
                if self.config.hedging and not pin:
                    response, host = await self._hedged(task, host, tried, send)
                else:
                    response = await send(host)
            except _Failed as failed:
                host = failed.host or host
                errors.append(f"{host.name}: {failed.failure.message}")
                busy_only = busy_only and not failed.failure.counts
                self._account(host, failed.failure)
                if pin:
                    if self._clock() >= deadline or not self.budget.try_spend():
                        raise PoolError(self._summary(f"pinned host {pin!r} failed {task}", errors)) from None
                    await self._sleep(min(0.2, max(0.0, deadline - self._clock())))
                continue
            try:
                result = parse_for(host, response) if parse_for is not None else parse(response)  # type: ignore[misc]
            except (BadResponse, ValueError, KeyError, TypeError) as exc:
                failure = _Failure(f"malformed answer: {describe_malformed(exc)}")
                errors.append(f"{host.name}: {failure.message}")
                busy_only = False
                self._account(host, failure)
                continue
            return result, host

    async def _hedged(
        self, task: str, host: Host, tried: set[str], send: Callable[[Host], Awaitable[httpx.Response]]
    ) -> tuple[httpx.Response, Host]:
        """Send to `host`; if it is slower than its own p95, send a copy to another host too.

        The first good answer wins and the other request is cancelled (its connection is
        closed, so the service drops its unstarted work)."""
        primary: asyncio.Future[httpx.Response] = asyncio.ensure_future(send(host))
        p95 = host.p95_latency()
        owners: dict[asyncio.Future[httpx.Response], Host] = {primary: host}
        try:
            done: set[Any]
            if p95 is not None:
                done, _ = await asyncio.wait({primary}, timeout=p95)
                backup = None if done else self.pick(task, exclude=tried)
                if backup is not None and backup.usable(self._clock()):
                    tried.add(backup.name)
                    self.hedges += 1
                    owners[asyncio.ensure_future(send(backup))] = backup
            pending: set[Any] = set(owners)
            failure: _Failed | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    exc = future.exception()
                    if exc is None:
                        return future.result(), owners[future]
                    if not isinstance(exc, _Failed):
                        raise exc
                    exc.host = owners[future]
                    if failure is not None and failure.host is not None:
                        self._account(failure.host, failure.failure)
                    failure = exc
            assert failure is not None
            raise failure
        finally:
            for future in owners:
                future.cancel()
            await asyncio.gather(*owners, return_exceptions=True)

    async def _send(self, host: Host, method: str, path: str, body: Any, deadline: float) -> httpx.Response:
        rec = host.record
        rec.in_flight += 1
        started = self._clock()
        request_id = uuid.uuid4().hex
        try:
            timeout = max(0.05, min(host.timeout, deadline - started))
            try:
                response = await host.client.request(
                    method, path, json=body, timeout=timeout, headers={"X-Request-Id": request_id}
                )
            except asyncio.CancelledError:
                # Abandoned (the agent cancelled, a hedge won, a shard failed): tell the host,
                # so it drops the work instead of computing an answer nobody reads.
                if host.kind == "gpu-service" and method == "POST":
                    self._abort_remote(host, request_id)
                raise
            except httpx.TimeoutException:
                if host.kind == "gpu-service" and method == "POST":
                    self._abort_remote(host, request_id)  # it must not keep computing what we retry elsewhere
                raise _Failed(_Failure(f"timed out after {timeout:.1f}s")) from None
            except httpx.TransportError as exc:
                raise _Failed(_Failure(describe_transport_error(exc))) from None
        finally:
            rec.in_flight -= 1
            async with self._capacity:
                self._capacity.notify_all()
        status = response.status_code
        if status < 400:
            host.succeeded(self._clock() - started)
            return response
        detail = error_detail(response)
        if status in RETRYABLE_STATUS:
            retry_after = _retry_after(response)
            busy = status in (429, 503) and retry_after is not None
            raise _Failed(_Failure(f"HTTP {status}: {detail}", retry_after, counts=not busy))
        host.record.last_error = f"HTTP {status}: {detail}"
        raise HostRejected(host.name, status, detail)

    def _abort_remote(self, host: Host, request_id: str) -> None:
        async def abort() -> None:
            try:
                await host.client.post(f"/cancel/{request_id}", timeout=2.0)
            except httpx.HTTPError:
                pass  # best effort: the host's deadline ends the work anyway

        task = asyncio.get_running_loop().create_task(abort())
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    def _account(self, host: Host, failure: _Failure) -> None:
        if failure.counts:
            host.failed(failure.message)
        else:
            host.cool_down(failure.retry_after or 1.0, failure.message)
        log.info("host %s: %s", host.name, failure.message)

    async def _backoff(self, hosts: list[Host], deadline: float) -> None:
        now = self._clock()
        waits = [max(h.record.cooldown_until, 0) - now for h in hosts if h.cooling(now)]
        delay = min(waits) if waits and len(waits) == len(hosts) else self._rng.uniform(0.05, 0.25)
        await self._sleep(max(0.0, min(delay, deadline - now, MAX_RETRY_AFTER_S)))

    async def _wait_for_capacity(self, deadline: float) -> None:
        async with self._capacity:
            try:
                await asyncio.wait_for(self._capacity.wait(), timeout=max(0.01, min(1.0, deadline - self._clock())))
            except TimeoutError:
                pass

    def _raise_if_busy(self, busy_only: bool, hosts: list[Host], errors: list[str]) -> None:
        """Out of time or retries, and every host only said it was busy: that is overload, not failure."""
        if not (busy_only and errors):
            return
        now = self._clock()
        waits = [h.record.cooldown_until - now for h in hosts if h.cooling(now)]
        retry_after = max(1.0, min(waits)) if waits else 1.0
        raise PoolBusy(self._summary("every host is busy", errors), retry_after)

    @staticmethod
    def _summary(message: str, errors: list[str]) -> str:
        if not errors:
            return message
        shown = errors[-4:]
        more = f" (+{len(errors) - len(shown)} earlier)" if len(errors) > len(shown) else ""
        return f"{message}: " + "; ".join(shown) + more

    # ------------------------------------------------------------------ fan-out (health, info, status)

    async def each(
        self, fn: Callable[[Host], Awaitable[T]], timeout: float
    ) -> list[tuple[Host, T | None, str | None]]:
        """Run `fn` on every host at once, each bounded by `timeout`: (host, result, error)."""

        async def one(host: Host) -> tuple[Host, T | None, str | None]:
            try:
                return host, await asyncio.wait_for(fn(host), timeout), None
            except TimeoutError:
                return host, None, f"no answer within {timeout:.1f}s"
            except httpx.HTTPError as exc:
                return host, None, describe_transport_error(exc)
            except (PoolError, ValueError) as exc:
                return host, None, str(exc)

        return list(await asyncio.gather(*(one(h) for h in self.hosts)))

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        usable = [h for h in self.hosts if h.usable(now)]
        return {
            "strategy": self.strategy,
            "mode": "normal" if usable else "panic",
            "hosts": [h.snapshot(now) for h in self.hosts],
            "panics": self.panics,
            "hedges": self.hedges,
        }

    async def close(self) -> None:
        if self._aborts:  # give pending cancel notices a moment, never forever
            _, pending = await asyncio.wait(set(self._aborts), timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(h.close() for h in self.hosts))


class _Failed(Exception):
    def __init__(self, failure: _Failure, host: Host | None = None) -> None:
        self.failure = failure
        self.host = host
