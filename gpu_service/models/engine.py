"""What the model registry and the batcher need from a loaded model, whatever its task.

An engine is built by its task's builder (`Task.engine`, on a loader thread) for one `ModelKey`: each
`gpu_service/tasks/<task>/engine.py` has one. Each also has its own preprocessing methods, which its
task's service (`tasks/<task>/service.py`) calls on the engine of the kind it asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class EngineDetails:
    """Task-specific fields of a model's entry in /info (`ModelInfo`); None where the task has none."""

    dimensions: int | None = None
    """Embedding models: the vector width."""
    max_tokens: int | None = None
    """Embedding models: tokens read per text."""
    prompts: list[str] | None = None
    """Embedding models: the prompts the model defines that add text."""
    speakers: list[str] | None = None
    """Voice models with several speakers: their names (what a request's `voice` may name)."""


class Engine(Protocol):
    name: str
    """The model's name as requested (what answers report)."""
    memory_bytes: int
    """Parameter memory, for the registry's budget and /info."""
    padded: bool
    """Whether a batch is padded to its longest item (what it costs: count x longest tokens), or runs
    on real tokens only (see unpadded.py). The batcher cuts batches accordingly (batch_plan.py)."""
    concurrency: int
    """Batches run at once. 1 (every engine on a device): one batch at a time, holding one of the device's
    slots (GPU_MAX_CONCURRENT). More: the engine runs one item per model call on one CPU core each (a CPU
    voice); its scheduler then runs that many single-item batches at once, bounded by this number rather
    than the device's slots, and chooses the class whenever a core is free."""

    def run(self, batch: list[Any]) -> Iterable[Any]:
        """One result per item of `batch`, in order (on the model's worker thread)."""
        ...

    def details(self) -> EngineDetails:
        """Task-specific fields of this model's entry in /info (ModelInfo), e.g. an embedding's width."""
        ...

    def close(self) -> None:
        """Release the model's memory (it is not used again)."""
        ...
