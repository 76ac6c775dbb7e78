"""A pool of long-lived decoder processes (`decode_worker`), each killed when a file runs past its time.

Starting a Python process per file cost ~0.2 CPU s (the interpreter, numpy and PyAV imports), as
much as transcribing a short voice note on a CPU; a worker that stays costs that once. Every
guarantee of a process per file is kept:

- A file gets `timeout_s` from the moment its request is sent (for a freshly started worker this
  includes the worker's start, as it did before). Past it the worker is killed and reaped, the
  file's answer is "timed out", and the pool starts a new worker when one is next needed.
- A worker that exits without a reply (a crash in FFmpeg, a signal) answers `Crashed` with its exit
  status, and is replaced. Other files, on other workers, are not affected.
- A worker is retired after `RECYCLE_AFTER` files, so anything a hostile file leaks stays bounded.
- At most `size` files decode at once (one per worker); `decode` blocks the calling thread until
  its file's turn, so callers run it on threads of their own, never on the event loop.
- Workers start with `subprocess.Popen` (vfork, no fork handlers: see `decode.py`), lazily, and
  `close` stops them all (the service's lifespan calls it on the way out). A worker whose service is
  gone sees its stdin close and exits.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from gpu_service.tasks.transcribe import decode_worker
from gpu_service.tasks.transcribe.decode_worker import REPLY, REQUEST

RECYCLE_AFTER = 500
"""Files one worker decodes before it is replaced by a fresh process: bounds what hostile files can
leak (memory, file descriptors) inside FFmpeg, at the cost of one start per 500 files."""


WORKER_COMMAND = (sys.executable, "-P", decode_worker.__file__)
"""A worker runs decode_worker.py as a script (`-P`: without the script's folder on sys.path), so it imports
PyAV and nothing of the service: `python -m gpu_service.tasks.transcribe.decode_worker` would first import
the packages above it, and `gpu_service.tasks` loads every task, torch included (seconds of CPU a worker)."""

_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""A worker does no linear algebra: numpy's BLAS need not start a thread per CPU in each worker."""


@dataclass(frozen=True)
class Decoded:
    """The worker's reply: status 0 (`pcm` holds the samples), `NOT_AUDIO` or `TOO_LONG` (`reason`)."""

    status: int
    reason: str
    pcm: memoryview


@dataclass(frozen=True)
class Crashed:
    """The worker exited before it replied (`exit_status`: its exit code, or minus the signal)."""

    exit_status: int


class _Worker:
    """One decoder process and the files it has been given."""

    def __init__(self, generation: int) -> None:
        self.proc = subprocess.Popen(
            WORKER_COMMAND,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
            env={**os.environ, **_ONE_THREAD},
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)
        self.generation = generation
        self.files = 0
        self.in_sync = True

    def ask(self, data: bytes, max_seconds: float, timeout_s: float) -> Decoded | Crashed | None:
        """Decode one file on this worker: its reply, `Crashed`, or None when it ran out of time
        (then the worker is already killed and reaped)."""
        self.files += 1
        deadline = time.monotonic() + timeout_s
        request = memoryview(REQUEST.pack(max_seconds, len(data)) + data)
        reply = self._exchange(request, deadline)
        if isinstance(reply, bytearray):
            status, reason_size, _ = REPLY.unpack_from(reply)
            reason = bytes(reply[REPLY.size:REPLY.size + reason_size]).decode("utf-8", "replace")
            return Decoded(status, reason, memoryview(reply)[REPLY.size + reason_size:])
        if reply is None:
            self.stop()
            return None
        try:  # it closed its stdout: it is exiting
            return Crashed(self.proc.wait(timeout=max(deadline - time.monotonic(), 0.0)))
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def _exchange(self, request: memoryview, deadline: float) -> bytearray | bool | None:
        """Send `request` while reading the reply: the reply, False at end of file (the worker
        died), None at the deadline."""
        reply, need = bytearray(), REPLY.size
        with selectors.DefaultSelector() as selector:
            selector.register(self.stdin, selectors.EVENT_WRITE)
            selector.register(self.stdout, selectors.EVENT_READ)
            while len(reply) < need:
                left = deadline - time.monotonic()
                ready = selector.select(left) if left > 0 else []
                if not ready:
                    return None
                for key, _ in ready:
                    if key.fd == self.stdin:
                        try:
                            request = request[os.write(self.stdin, request):]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            request = request[:0]
                        if not request:
                            selector.unregister(self.stdin)
                        continue
                    try:
                        chunk = os.read(self.stdout, min(need - len(reply), 1 << 20))
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return False
                    reply += chunk
                    if need == REPLY.size and len(reply) >= REPLY.size:
                        _, reason_size, pcm_size = REPLY.unpack_from(reply)
                        need += reason_size + pcm_size
        self.in_sync = not request  # a reply before the whole request was read: never reuse it
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Kill the process, reap it, close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class DecoderPool:
    """At most `size` decoder processes, started when needed, reused for `recycle_after` files each."""

    def __init__(self, size: int | None = None, *, recycle_after: int = RECYCLE_AFTER) -> None:
        self.size = size or max(1, len(os.sched_getaffinity(0)))
        self.recycle_after = recycle_after
        self.started = 0
        """Worker processes started so far (for tests and metrics)."""
        self._turns = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._generation = 0

    def decode(self, data: bytes, max_seconds: float, timeout_s: float) -> Decoded | Crashed | None:
        """One file on one worker (blocking: call it on a thread of its own): the worker's reply,
        `Crashed`, or None when it ran past `timeout_s` and was killed."""
        with self._turns:
            worker = self._borrow()
            answer: Decoded | Crashed | None = None
            try:
                answer = worker.ask(data, max_seconds, timeout_s)
            finally:
                self._give_back(worker, keep=isinstance(answer, Decoded))
            return answer

    def pids(self) -> list[int]:
        """The process ids of the workers alive now, idle or busy."""
        with self._lock:
            return sorted(w.proc.pid for w in [*self._idle, *self._busy] if w.alive())

    def busy(self) -> int:
        """Workers decoding a file now."""
        with self._lock:
            return len(self._busy)

    def close(self) -> None:
        """Stop every worker: idle ones now, busy ones when their file is done. The pool stays usable
        (a later `decode` starts new workers)."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def _borrow(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    self._busy.add(worker)
                    return worker
                worker.stop()  # killed from outside while idle: reap it, take another
            generation = self._generation
        worker = _Worker(generation)
        with self._lock:
            self.started += 1
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker, *, keep: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            keep = (keep and worker.in_sync and worker.files < self.recycle_after
                    and worker.generation == self._generation and worker.alive())
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.stop()
