"""Dynamic batching: one scheduler per loaded model.

Requests put their items (texts, or sentences for BERTScore) on the model's queue,
already tokenized, each with its token count, in their lane: a priority class and a tenant
(`lanes.py`). Before every batch the scheduler chooses the class (interactive first; batch keeps a
share and ages), and each class works in rounds: it takes its oldest waiting items round-robin across
tenants (up to `ROUND_BATCHES` batches' worth), sorts them by length and cuts them where padding would
cost more than another forward pass (`batch_plan.py`; within `max_batch_tokens` padded tokens and
`max_batch_size` items), so texts of similar length share a batch, whichever requests they came from.
An interactive item that arrives while a big batch request is worked off goes into the next batch; a
batch-class batch is kept to about `BATCH_TARGET_S` of device time (from the measured cost per token,
`pace.py`; less while several tenants wait), so that wait stays short on a slow device too. A class's
rounds, and how a tenant that arrives mid-round gets its turn: `class_queue.py`.
When the queue is thin the loop waits a short window so concurrent requests share a
batch. Batches run on the model's worker thread, one at a time (`concurrency` 1: a device runs one
batch at a time), or for an engine that runs one item per CPU core (a CPU voice), up to `concurrency`
batches of one item at once, the class chosen afresh whenever a worker is free. Each item gets its own
result, back at its input position.

Shape after Infinity's `batch_handler` and TEI's queue: admission control at the
door (a bounded queue per class, 429 past it; and batch work its backlog cannot finish before its caller
stops waiting, `X-GPU-Timeout`, 429 with the time it would fit), the model never blocks the event loop,
and every accepted item gets a result or an exception - never silence.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from gpu_protocol.priority import PRIORITIES, ClassChooser, Priority
from gpu_service.errors import DeadlineExceeded, Overloaded, TooLate, Unavailable
from gpu_service.scheduling.batch_plan import CPU_OVERHEAD_TOKENS, cut_sorted
from gpu_service.scheduling.class_queue import ClassQueue, Item, RoundShape
from gpu_service.scheduling.jobs import Job
from gpu_service.scheduling.lanes import Lane
from gpu_service.scheduling.pace import BatchStats

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


BULK_MIN_OVERHEADS = 4
"""A batch counts toward the measured pace when its tokens are at least this many times a pass's fixed cost."""
ESTIMATE_SLACK = 1.25
"""Batch work is refused for lack of time when the backlog's measured duration times this exceeds its wait: the
rate varies from batch to batch by about this much (texts' lengths, the other processes on the machine)."""


class DeviceOutOfMemory(Unavailable):
    """Even a batch of one did not fit in device memory."""


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
        self._classes: dict[Priority, ClassQueue[P]] = {p: ClassQueue() for p in PRIORITIES}
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
        return sum(queue.count for queue in self._classes.values())

    def queued_by_class(self) -> dict[Priority, int]:
        """Items accepted and not yet started, per class (/status, /metrics)."""
        return {priority: queue.count for priority, queue in self._classes.items()}

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
        for queue in self._classes.values():
            for item in queue.drain():
                if not item.future.done():
                    item.future.set_exception(Unavailable(f"model {self.name!r} was unloaded; retry"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def admit(self, count: int, priority: Priority = "interactive") -> None:
        """Raise Overloaded if `count` more items would overflow their class's queue.

        Each class has its own cap (GPU_MAX_QUEUE), so batch load never refuses interactive work, and
        an empty queue always admits, so a big request below the hard limits is never refused just for
        being big. The Retry-After is the backlog ahead of it at the measured rate (at most 60 s)."""
        queued = self._classes[priority].count
        if queued and queued + count > self.max_queue:
            ahead = sum(q.tokens for q in self._classes.values()) if priority == "batch" else self._classes[priority].tokens
            wait = min(60.0, max(1.0, self.stats.seconds_for(ahead) or 1.0))  # interactive work goes before batch
            raise Overloaded(
                f"model {self.name!r} has {queued} {priority} items queued (GPU_MAX_QUEUE={self.max_queue}); "
                f"retry in about {wait:.0f}s or send to another host",
                retry_after_s=wait,
            )

    def refuse_if_late(self, costs: Sequence[int], lane: Lane, deadline: float | None) -> None:
        """Raise TooLate if batch work would not finish by `deadline` behind the work queued ahead of it, rather
        than compute it for a caller that has stopped waiting (the Retry-After: when the same wait would do).

        Only batch work is refused so (interactive work goes first), and only for a backlog ahead of it: a
        request that would not finish even alone runs (another host would do no better). Ahead of it: the
        interactive work, its tenant's earlier batch work, and of each other tenant's as many items as its own
        (tenants are served in turn). Until the rate is measured, a round's worth of items may be ahead of it (a
        cold host that takes every request of a burst would time them all out), past that it is refused for a
        second (Overloaded: a caller may try again within the same wait)."""
        if lane.priority != "batch" or deadline is None:
            return
        count, tokens = len(costs), sum(costs)
        batch, interactive = self._classes["batch"], self._classes["interactive"]
        others = batch.items_by_tenant()
        own = others.pop(lane.tenant, 0) + count
        ahead_items = own - count + sum(min(n, own) for n in others.values())
        if not ahead_items and not interactive.count:
            return
        per_item = (batch.tokens + tokens) / (batch.count + count)
        ahead_s = self.stats.seconds_for(interactive.tokens + round(ahead_items * per_item))
        own_s = self.stats.seconds_for(tokens)
        if ahead_s is None or own_s is None:
            if ahead_items <= self.round_items:
                return
            raise Overloaded(f"model {self.name!r} has {ahead_items} batch items queued ahead of these {count} and "
                             "has not measured its rate yet; retry in about 1s or send to another host",
                             retry_after_s=1.0)
        left = deadline - time.monotonic()
        needed = (ahead_s + own_s) * ESTIMATE_SLACK
        if needed <= left:
            return
        wait = min(60.0, max(1.0, needed - left))
        raise TooLate(
            f"model {self.name!r} has about {ahead_s:.0f}s of work queued ahead of these {count} items, which "
            f"would not finish within the {max(0.0, left):.1f}s left to wait for them; retry in about {wait:.0f}s "
            "or send to another host",
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
        self.refuse_if_late(costs, lane, deadline)
        if self._worker is None:
            self.start()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in payloads]
        order = sorted(range(len(payloads)), key=lambda i: -costs[i])
        items = [Item(payloads[i], max(1, costs[i]), futures[i], job) for i in order]
        self._classes[lane.priority].push(lane.tenant, items)
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
                "unstarted work was cancelled (raise GPU_REQUEST_TIMEOUT or send fewer texts)",
                # Busy, not broken: a bridge cools it down. How long is unknown (a burst of requests that all
                # miss their deadlines leaves together), so a second; what comes next is refused with its own.
                retry_after_s=1.0,
            ) from None
        finally:
            # Anything not started yet is dropped by the loop (cancelled futures are skipped).
            for future in futures:
                if not future.done():
                    future.cancel()
            self._classes[lane.priority].abandoned(items)

    async def call(self, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn` on the model thread, holding a device slot (for device work outside batches)."""

        def guarded() -> R:
            with self._slots:
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, guarded)

    # ------------------------------------------------------------------ the loop

    def _has_work(self) -> bool:
        return any(self._classes.values())

    def _take_batch(self) -> tuple[Priority, list[Item[P]]] | None:
        """The next batch to run and its class: the chosen class's round's next one (class_queue.py). A class
        whose pick found only items cancelled or timed out while they waited has not had its turn (the chooser
        counts batches that run)."""
        while True:
            waiting = {p: bool(queue) for p, queue in self._classes.items()}
            priority = self._chooser.pick(waiting, self._classes["batch"].oldest_wait(time.monotonic()))
            if priority is None:
                return None
            live = self._classes[priority].next_batch(functools.partial(self._round_shape, priority))
            if live:
                self._chooser.ran(priority)
                return priority, live

    def _round_shape(self, priority: Priority, tenants: int) -> RoundShape:
        """A round holds at most `ROUND_BATCHES` batches' worth of items (times the workers: with several, it
        runs longest first so they finish together). While several tenants wait it also holds at most that many
        batches of tokens: for the batch class a few times its target device time, not a few times
        `max_batch_size` items (seconds on a CPU), since a tenant's items spread over the round as it is sorted
        by length and each request waits for its round's end."""
        per_batch = self._token_budget(priority, tenants)

        def cut(costs: list[int]) -> list[int]:
            return cut_sorted(costs, max_size=self.max_batch_size, max_tokens=per_batch,
                              overhead=self.overhead_tokens, padded=self.padded)

        most_tokens = ROUND_BATCHES * per_batch * self.concurrency if tenants > 1 else float("inf")
        return RoundShape(self.round_items, most_tokens, cut, longest_first=self.concurrency > 1)

    @property
    def round_items(self) -> int:
        """The most items a round takes: `ROUND_BATCHES` full batches (times the workers)."""
        return ROUND_BATCHES * self.max_batch_size * self.concurrency

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
        for item in (item for queue in self._classes.values() for item in queue.waiting()):
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
            taken = self._take_batch()
            if taken is None:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(*taken), name=f"batch-{self.name}")
            self._in_flight.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._free.release()

    async def _run(self, priority: Priority, batch: list[Item[P]]) -> None:
        """Run one batch of `priority` work on a worker thread and give each item its result (or what went wrong)."""
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
        self._record(priority, batch, elapsed, max(1, alongside))
        for job in jobs.values():
            job.compute_s += elapsed
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
            if item.job is not None:
                item.job.done += 1
        for job in jobs.values():
            job.log_progress()

    def _record(self, priority: Priority, batch: list[Item[P]], elapsed: float, alongside: int = 1) -> None:
        """`alongside`: batches that ran at once (the rate is the model's, not one worker's)."""
        tokens = sum(i.cost for i in batch)
        padded = max(i.cost for i in batch) * len(batch) if self.padded else tokens
        # Measured on bulk work only: a batch of a few short texts is mostly a pass's fixed cost, whatever its class.
        bulk = priority == "batch" and tokens >= BULK_MIN_OVERHEADS * self.overhead_tokens
        self.stats.record(tokens, padded, elapsed, alongside, bulk=bulk)
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
