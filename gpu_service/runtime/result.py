"""What every task's service answers (text-embeddings-inference's `InferMetadata` is the model): the value,
and how it was made: the model, where the time went, tokens read and inputs cut. `http.serve` observes the
timing and writes its headers from it, once for every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from gpu_service.scheduling.jobs import Timing

T = TypeVar("T")


@dataclass(frozen=True)
class Result(Generic[T]):
    value: T
    """What the request asked for (vectors, a ranking, scores, a transcript, counts)."""
    model: str
    """The model that made it, as answers report it."""
    timing: Timing
    """Queue and inference time (the timing headers and the latency metrics)."""
    tokens: int = 0
    """Tokens the model read (usage)."""
    truncated: int = 0
    """Inputs cut at the model's maximum."""
