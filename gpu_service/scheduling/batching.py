"""Dynamic batching: one scheduler per loaded model.

Requests put their items (texts, or sentences for BERTScore) on the model's queue,
already tokenized, each with its token count, in their lane: a priority class and a tenant
(`lanes.py`). Before every batch the scheduler chooses the class (interactive first; batch keeps a
share and ages), and each class works in rounds: it takes its oldest waiting items round-robin across
tenants (up to `ROUND_BATCHES` batches' worth), sorts them by length and cuts them where padding would
cost more than another forward pass (`batch_plan.py`; within `max_batch_tokens` padded tokens and
`max_batch_size` items), so texts of similar length share a batch, whichever requests they came from.
An interactive item that arrives while a big batch request is worked off goes into the next batch; a
batch-class batch is kept to about `BATCH_TARGET_S` of device time (from the measured cost per token; less
while several tenants wait), so that wait stays short on a slow device too. Within a class, a round runs to its end before newer
items are looked at, so no item waits longer than one round behind later arrivals of its class; except
that a tenant whose request arrives while the round holds little or nothing of it has the round formed
again at the next batch, so its items are served in turn with the others' rather than after them.
When the queue is thin the loop waits a short window so concurrent requests share a
batch. Batches run on the model's worker thread, one at a time (`concurrency` 1: a device runs one
batch at a time), or for an engine that runs one item per CPU core (a CPU voice), up to `concurrency`
batches of one item at once, the class chosen afresh whenever a worker is free. Each item gets its own
result, back at its input position.

Shape after Infinity's `batch_handler` and TEI's queue: admission control at the
door (a bounded queue, 429 past it), the model never blocks the event loop, and
every accepted item gets a result or an exception - never silence.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gpu_protocol.priority import PRIORITIES, ClassChooser, Priority
from gpu_service.errors import DeadlineExceeded, Overloaded, Unavailable
from gpu_service.scheduling.batch_plan import CPU_OVERHEAD_TOKENS, cut_sorted
from gpu_service.scheduling.jobs import Job
from gpu_service.scheduling.lanes import Lane, TenantQueue

P = TypeVar("P")
R = TypeVar("R")

log = logging.getLogger(__name__)

ROUND_BATCHES = 4
"""A round sorts at most this many full batches' worth of the oldest waiting items."""

BATCH_TARGET_S = 0.5
"""A batch-class batch holds about this much device time at most (an interactive item waits for it)."""

SHARED_BATCH_TARGET_S = 0.25
"""The same while several tenants' batch work waits: a tenant's request waits for the batch in flight too, so a
shorter one keeps their turns close (bench/fairness.py, a one-client tenant beside a six-client one: 36-38% of the
texts at 0.5 s, 42-47% at 0.25 s). One tenant's bulk keeps the longer batch: fewer interruptions, more of its rate
kept beside interactive calls."""


class DeviceOutOfMemory(Unavailable):
    """Even a batch of one did not fit in device memory."""


@dataclass
class _Item(Generic[P]):
    payload: P
    cost: int
    future: asyncio.Future[Any]
    job: Job | None
    tenant: str = ""
    queued_at: float = 0.0
    """Its tenant and when it was queued: set when a round takes it, so a round given back puts it back as it was."""


@dataclass
class BatchStats:
    batches: int = 0
    """Batches run so far (/status)."""
    oom_splits: int = 0
    items_per_s: float = 0.0
    """EWMA throughput; used to tell an overloaded client when to come back."""
    s_per_token: float = 0.0
    """EWMA device seconds per padded token; bounds a batch-class batch's duration."""


BatchObserver = Callable[[str, int, int, float], None]
"""Called after each batch with (model, items, padded tokens, seconds)."""


class BatchScheduler(Generic[P, R]):
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[P]], Iterable[R]],
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        overhead_tokens: int = CPU_OVERHEAD_TOKENS,
        padded: bool = True,
        max_queue: int,
        window_s: float,
        device_slots: threading.Semaphore,
        is_oom: Callable[[BaseException], bool] = lambda exc: False,
        after_oom: Callable[[], None] = lambda: None,
        observer: BatchObserver | None = None,
        concurrency: int = 1,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.overhead_tokens = overhead_tokens
        self.padded = padded
        """False for an engine that runs real tokens only: a batch costs its tokens, not count x longest."""
        self.max_queue = max_queue
        self.window_s = window_s
        self._slots = device_slots
        self._is_oom = is_oom
        self._after_oom = after_oom
        self._observer = observer
        self.concurrency = max(1, concurrency)
        """Batches running at once, each on its own worker thread."""
        self._free = asyncio.Semaphore(self.concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._waiting: dict[Priority, TenantQueue[_Item[P]]] = {p: TenantQueue() for p in PRIORITIES}
        self._rounds: dict[Priority, collections.deque[list[_Item[P]]]] = {p: collections.deque() for p in PRIORITIES}
        """Per class, batches formed from its oldest items, sorted by length, not yet started."""
        self._arrived: dict[Priority, set[str]] = {p: set() for p in PRIORITIES}
        """Per class, the tenants whose items arrived since its current round was formed (or last looked at)."""
        self._queued_by: dict[Priority, int] = dict.fromkeys(PRIORITIES, 0)
        self._chooser = ClassChooser()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"model-{name}")
        self._worker: asyncio.Task[None] | None = None
        self.stats = BatchStats()
        self.running = 0

    # ------------------------------------------------------------------ public

    @property
    def queued(self) -> int:
        """Items accepted and not yet started."""
        return sum(self._queued_by.values())

    def queued_by_class(self) -> dict[Priority, int]:
        """Items accepted and not yet started, per class (/status, /metrics)."""
        return dict(self._queued_by)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        """Stop the loop; anything still queued fails with 503 so no caller waits forever."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        for priority in PRIORITIES:
            waiting = [*self._waiting[priority].drain(), *(i for batch in self._rounds[priority] for i in batch)]
            self._rounds[priority].clear()
            for item in waiting:
                if not item.future.done():
                    item.future.set_exception(Unavailable(f"model {self.name!r} was unloaded; retry"))
            self._queued_by[priority] = 0
        self._executor.shutdown(wait=False, cancel_futures=True)

    def admit(self, count: int, priority: Priority = "interactive") -> None:
        """Raise Overloaded if `count` more items would overflow their class's queue.

        Each class has its own cap (GPU_MAX_QUEUE), so batch load never refuses interactive work, and
        an empty queue always admits, so a big request below the hard limits is never refused just for
        being big. The Retry-After is the backlog ahead of it at the measured rate (at most 60 s)."""
        queued = self._queued_by[priority]
        if queued and queued + count > self.max_queue:
            ahead = self.queued if priority == "batch" else queued  # interactive work goes before batch work
            wait = min(60.0, max(1.0, ahead / (self.stats.items_per_s or 1.0)))
            raise Overloaded(
                f"model {self.name!r} has {queued} {priority} items queued (GPU_MAX_QUEUE={self.max_queue}); "
                f"retry in about {wait:.0f}s or send to another host",
                retry_after_s=wait,
            )

    async def submit(
        self, payloads: Sequence[P], costs: Sequence[int], *, job: Job | None = None, deadline: float | None = None,
        lane: Lane | None = None,
    ) -> list[R]:
        """Run every payload, in batches shared with other requests of its class; results in input order.
        `lane`: its class and tenant (default: the job's, else interactive with no tenant)."""
        lane = lane or (job.lane if job is not None else Lane())
        self.admit(len(payloads), lane.priority)
        if self._worker is None:
            self.start()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in payloads]
        order = sorted(range(len(payloads)), key=lambda i: -costs[i])
        self._waiting[lane.priority].push(lane.tenant, (_Item(payloads[i], max(1, costs[i]), futures[i], job)
                                                        for i in order))
        self._queued_by[lane.priority] += len(payloads)
        self._arrived[lane.priority].add(lane.tenant)
        self._wakeup.set()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        gathered = asyncio.gather(*futures)
        # Whatever ends the wait, the gathered result is consumed (no "never retrieved" noise).
        gathered.add_done_callback(lambda g: g.cancelled() or g.exception())
        try:
            return list(await asyncio.wait_for(gathered, timeout))
        except TimeoutError:
            raise DeadlineExceeded(
                f"request did not finish within its deadline on model {self.name!r}; "
                "unstarted work was cancelled (raise GPU_REQUEST_TIMEOUT or send fewer texts)"
            ) from None
        finally:
            # Anything not started yet is dropped by the loop (cancelled futures are skipped).
            for future in futures:
                if not future.done():
                    future.cancel()

    async def call(self, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn` on the model thread, holding a device slot (for device work outside batches)."""

        def guarded() -> R:
            with self._slots:
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, guarded)

    # ------------------------------------------------------------------ the loop

    def _has_work(self) -> bool:
        return any(self._waiting[p] or self._rounds[p] for p in PRIORITIES)

    def _take_batch(self) -> list[_Item[P]]:
        """The next batch to run: the chosen class's round's next one, after forming a new round if it is
        over. Items cancelled or timed out while they waited are dropped here, never run; a class whose
        pick found only such items has not had its turn (the chooser counts batches that run)."""
        while True:
            waiting = {p: bool(self._waiting[p] or self._rounds[p]) for p in PRIORITIES}
            priority = self._chooser.pick(waiting, self._waiting["batch"].oldest_wait(time.monotonic()))
            if priority is None:
                return []
            rounds = self._rounds[priority]
            if rounds and self._arrived[priority] and self._round_leaves_out(priority):
                self._give_back_round(priority)  # a tenant that arrived has too little of the round: it joins now
            self._arrived[priority].clear()
            if not rounds:
                self._form_round(priority)
                if not rounds:
                    continue
            batch = rounds.popleft()
            self._queued_by[priority] -= len(batch)
            live = [item for item in batch if not item.future.done()]
            if live:
                self._chooser.ran(priority)
                return live

    def _form_round(self, priority: Priority) -> None:
        """Take the class's oldest waiting items, tenants in turn, sort them by length, cut them into batches.
        With several workers, a round holds that many times the items and runs the longest first, so the
        workers finish together (no core idles while the round's longest item runs last)."""
        waiting = self._waiting[priority]
        items: list[_Item[P]] = []
        tenants = len(waiting.tenants())
        per_batch = self._token_budget(priority, tenants)
        most, tokens = ROUND_BATCHES * self.max_batch_size * self.concurrency, 0
        budget = self._round_tokens(per_batch) if tenants > 1 else float("inf")
        while waiting and len(items) < most and tokens < budget:
            tenant, queued_at, item = waiting.pop_timed()
            item.tenant, item.queued_at = tenant, queued_at
            if item.future.done():  # cancelled or timed out before it started
                self._queued_by[priority] -= 1
                continue
            items.append(item)
            tokens += item.cost
        items.sort(key=lambda item: item.cost)  # stable: equal lengths keep their arrival order
        sizes = cut_sorted([item.cost for item in items], max_size=self.max_batch_size,
                           max_tokens=per_batch, overhead=self.overhead_tokens, padded=self.padded)
        batches, start = [], 0
        for size in sizes:
            batches.append(items[start:start + size])
            start += size
        self._rounds[priority].extend(reversed(batches) if self.concurrency > 1 else batches)

    def _round_leaves_out(self, priority: Priority) -> bool:
        """Whether a tenant whose items arrived since the class's round was formed holds less than half of an
        even share of what is left of the round: a tenant new to it (none), or one whose few items from its
        last request sort to the round's end while its next request waits for the round to be over."""
        in_round = collections.Counter(item.tenant for batch in self._rounds[priority] for item in batch)
        waiting = self._waiting[priority].tenants()
        even = sum(in_round.values()) / max(1, len(in_round.keys() | waiting.keys()))
        return any(in_round[tenant] < even / 2 for tenant in self._arrived[priority] if tenant in waiting)

    def _give_back_round(self, priority: Priority) -> None:
        """The class's round's unstarted items, back at the head of their tenants' queues (ages kept), so the
        next round serves a tenant that arrived meanwhile in turn with the others rather than after them."""
        by_tenant: dict[str, list[tuple[float, _Item[P]]]] = {}
        for item in sorted((i for batch in self._rounds[priority] for i in batch), key=lambda i: i.queued_at):
            by_tenant.setdefault(item.tenant, []).append((item.queued_at, item))
        self._rounds[priority].clear()
        for tenant, items in by_tenant.items():
            self._waiting[priority].put_back(tenant, items)

    def _round_tokens(self, per_batch: int) -> int:
        """A round's tokens at most while several tenants wait: `ROUND_BATCHES` batches of `per_batch` tokens. For
        the batch class that is a few times its target device time, not a few times `max_batch_size` items
        (seconds on a CPU): a tenant's items spread over the round as it is sorted by length, so each request
        waits for its round's end. One tenant's round is only bounded by items (the most texts sorted together)."""
        return ROUND_BATCHES * per_batch * self.concurrency

    def _token_budget(self, priority: Priority, tenants: int = 1) -> int:
        """A batch's padded tokens at most: for the batch class, also about `BATCH_TARGET_S` of device time
        (`SHARED_BATCH_TARGET_S` while `tenants`, more than one, wait in it)."""
        per_token = self.stats.s_per_token
        if priority == "interactive" or per_token <= 0:
            return self.max_batch_tokens
        target = SHARED_BATCH_TARGET_S if tenants > 1 else BATCH_TARGET_S
        return max(1, min(self.max_batch_tokens, int(target / per_token)))

    def _budget_full(self) -> bool:
        """Whether the waiting work already fills a batch (then the collection window is skipped)."""
        longest = count = 0
        for item in (item for p in PRIORITIES for item in self._waiting[p]):
            count, longest = count + 1, max(longest, item.cost)
            if longest * count >= self.max_batch_tokens or count >= self.max_batch_size:
                return True
        return False

    async def _loop(self) -> None:
        while True:
            if not self._has_work():
                self._wakeup.clear()
                await self._wakeup.wait()
                # Collection window: a lone request waits a moment for company.
                if self.window_s > 0 and not self._budget_full():
                    await asyncio.sleep(self.window_s)
            await self._free.acquire()  # a worker is free: only now is the next batch (and its class) chosen
            batch = self._take_batch()
            if not batch:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch), name=f"batch-{self.name}")
            self._in_flight.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._free.release()

    async def _run(self, batch: list[_Item[P]]) -> None:
        """Run one batch on a worker thread and give each item its result (or what went wrong)."""
        started = time.perf_counter()
        jobs = {id(i.job): i.job for i in batch if i.job is not None}
        for job in jobs.values():
            if job.first_batch_at is None:
                job.first_batch_at = time.monotonic()
        self.running += len(batch)
        alongside = len(self._in_flight)  # batches running now, this one included
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_guarded, [i.payload for i in batch]
            )
        except BaseException as exc:  # noqa: BLE001 - every item must learn what happened
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self.running -= len(batch)
        elapsed = time.perf_counter() - started
        self._record(batch, elapsed, max(1, alongside))
        for job in jobs.values():
            job.compute_s += elapsed
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
            if item.job is not None:
                item.job.done += 1
        for job in jobs.values():
            job.log_progress()

    def _record(self, batch: list[_Item[P]], elapsed: float, alongside: int = 1) -> None:
        """`alongside`: batches that ran at once (the rate is the model's, not one worker's)."""
        padded = max(i.cost for i in batch) * len(batch)
        self.stats.batches += 1
        rate = alongside * len(batch) / max(elapsed, 1e-6)
        self.stats.items_per_s = rate if self.stats.items_per_s == 0 else 0.8 * self.stats.items_per_s + 0.2 * rate
        per_token = elapsed / max(padded, 1)
        self.stats.s_per_token = (per_token if self.stats.s_per_token == 0
                                  else 0.8 * self.stats.s_per_token + 0.2 * per_token)
        if self._observer is not None:
            self._observer(self.name, len(batch), padded, elapsed)

    # ------------------------------------------------------------------ worker thread

    def _run_guarded(self, payloads: list[P]) -> list[R]:
        """Run one batch on the device; on out-of-memory, split it and try the halves."""
        with self._slots:
            try:
                results = list(self._run_batch(payloads))
            except Exception as exc:
                if not self._is_oom(exc):
                    raise
                self._after_oom()
                oom = exc
            else:
                if len(results) != len(payloads):
                    raise RuntimeError(f"model returned {len(results)} results for {len(payloads)} inputs")
                return results
        if len(payloads) == 1:
            raise DeviceOutOfMemory(
                f"model {self.name!r} ran out of device memory on a single input ({oom}); "
                "send shorter texts or use a host with more memory"
            )
        self.stats.oom_splits += 1
        half = len(payloads) // 2
        log.warning("out of device memory on a batch of %d for %s: retrying as %d + %d",
                    len(payloads), self.name, half, len(payloads) - half)
        return self._run_guarded(payloads[:half]) + self._run_guarded(payloads[half:])
