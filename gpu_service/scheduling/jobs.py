"""Jobs: one per accepted request, so `/status` can show what runs and how far it got.

A job is registered *before* it waits for anything (queue, model load), so the
queue it shows is the real one. The batcher bumps `done` as batches finish, so
progress moves in batch-sized steps, not 0 → 1.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

from gpu_protocol.priority import Priority
from gpu_protocol.status import JobStatus
from gpu_service.scheduling.lanes import Lane

_ids = itertools.count(1)
log = logging.getLogger("gpu_service.scheduling.batching")  # where progress lines have always come from

LONG_JOB_ITEMS = 512
"""Jobs with at least this many items log their progress."""


@dataclass(frozen=True)
class Timing:
    """Where a request's time went: waiting for its first batch, and in batches (the timing headers)."""

    queue_s: float = 0.0
    inference_s: float = 0.0
    priority: Priority | None = None
    """The class it queued in (None: no queue, e.g. a cached answer)."""


@dataclass
class Job:
    kind: str
    model: str
    total: int
    done: int = 0
    id: str = field(default_factory=lambda: f"job-{next(_ids)}")
    started: float = field(default_factory=time.monotonic)
    first_batch_at: float | None = None
    """When the first of its batches started: queue time = first_batch_at - started."""
    last_logged: float = 0.0
    compute_s: float = 0.0
    """Wall time of the batches it took part in (shared with other jobs in the same batch)."""
    lane: Lane = field(default_factory=Lane)
    """Its priority class and tenant: where its items queue (scheduling/lanes.py)."""

    def timing(self) -> Timing:
        """Queue time (until its first batch started) and time in batches so far."""
        queued = (self.first_batch_at - self.started) if self.first_batch_at is not None else 0.0
        return Timing(queue_s=queued, inference_s=self.compute_s, priority=self.lane.priority)

    def log_progress(self) -> None:
        """A long job logs its progress (at most once a second), as key=value fields; never texts."""
        now = time.monotonic()
        if self.total >= LONG_JOB_ITEMS and (now - self.last_logged >= 1.0 or self.done >= self.total):
            self.last_logged = now
            log.info("progress job=%s kind=%s model=%s done=%d total=%d elapsed_s=%.1f",
                     self.id, self.kind, self.model, self.done, self.total, now - self.started)

    def status(self) -> JobStatus:
        return JobStatus(
            id=self.id,
            kind=self.kind,
            model=self.model,
            done=self.done,
            total=self.total,
            age_s=round(time.monotonic() - self.started, 3),
        )


class JobTracker:
    def __init__(self) -> None:
        self._active: dict[str, Job] = {}

    def start(self, kind: str, model: str, total: int) -> Job:
        job = Job(kind=kind, model=model, total=total)
        self._active[job.id] = job
        return job

    def track(self, job: Job) -> Job:
        """Show a job made elsewhere (a stream's, made before its first piece is asked for)."""
        self._active[job.id] = job
        return job

    def finish(self, job: Job) -> None:
        self._active.pop(job.id, None)

    def active(self) -> list[Job]:
        return list(self._active.values())

    def __len__(self) -> int:
        return len(self._active)
