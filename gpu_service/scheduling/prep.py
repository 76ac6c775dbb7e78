"""A model's preparation thread, with the scheduler's waiting room in front of it.

Each loaded model prepares its requests (tokenizing texts, a speech file's voice detection and log-mel
features) on ONE thread, the only one that touches its tokenizer. Taken in arrival order, a voice note
would wait there behind a one-hour recording's preparation before any class applied. So the work waits
here in a queue per class and, within a class, per tenant (lanes.py), and each time the thread is free
it takes the next by the same rule as the batches (`ClassChooser`): interactive first, batch keeping its
guaranteed share and ageing. Preparation already running is never interrupted: an interactive request
waits at most for the one in progress.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from gpu_protocol.priority import PRIORITIES, ClassChooser, Priority
from gpu_service.scheduling.lanes import Lane, TenantQueue

T = TypeVar("T")


@dataclass
class _Work:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class PrepQueue:
    """One preparation thread; `run` queues work in its lane and the thread takes it in class order."""

    def __init__(self, name: str, chooser: ClassChooser | None = None) -> None:
        self._chooser = chooser or ClassChooser()
        self._waiting: dict[Priority, TenantQueue[_Work]] = {p: TenantQueue() for p in PRIORITIES}
        self._lock = threading.Lock()
        # One turn is submitted per piece of work queued; each turn takes whichever piece goes next.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"prep-{name}")

    def queued(self) -> dict[Priority, int]:
        with self._lock:
            return {p: len(self._waiting[p]) for p in PRIORITIES}

    async def run(self, lane: Lane, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the preparation thread, once its turn in `lane` comes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:  # the turn cannot look for its piece before it is queued: it takes the lock first
            self._thread.submit(self._turn)  # RuntimeError once closed, as the executor always did
            self._waiting[lane.priority].push(lane.tenant, [_Work(fn, args, future, loop)])
        return await future

    def _next(self) -> _Work | None:
        """The piece whose turn it is; work whose caller gave up while it waited is dropped, and a class
        whose pick found only such work has not had its turn."""
        with self._lock:
            while True:
                waiting = {p: bool(self._waiting[p]) for p in PRIORITIES}
                priority = self._chooser.pick(waiting, self._waiting["batch"].oldest_wait(time.monotonic()))
                if priority is None:
                    return None
                work = self._waiting[priority].pop()
                if not work.future.cancelled():
                    self._chooser.ran(priority)
                    return work

    def _turn(self) -> None:
        work = self._next()
        if work is None:  # an earlier turn took this turn's piece, its own having been dropped
            return
        try:
            result = work.fn(*work.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            _on_loop(work, _settle, work.future, None, exc)
        else:
            _on_loop(work, _settle, work.future, result, None)

    def close(self) -> None:
        """Stop the thread (after the piece in progress); whatever still waits is cancelled."""
        with self._lock:
            self._thread.shutdown(wait=False, cancel_futures=True)
            left = [work for queue in self._waiting.values() for work in queue.drain()]
        for work in left:
            _on_loop(work, work.future.cancel)


def _on_loop(work: _Work, fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn` on the loop of the caller that waits for `work` (nothing to do once that loop is closed)."""
    try:
        work.loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop closed: its caller is gone
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
