"""What a host can do, per task: the models it has loaded and may load. Stated in `/info`
(`InfoResponse.capabilities`) from protocol version 2 on, so a bridge reads it at every health check."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpu_protocol.base import AnswerModel

CapabilityTask = Literal["embed", "similarity", "bertscore", "rerank", "transcribe"]
CAPABILITY_TASKS: tuple[CapabilityTask, ...] = ("embed", "similarity", "bertscore", "rerank", "transcribe")
"""Every task a host reports on (similarity uses the embedding models; transcribe: none until a host has one)."""


class TaskModels(AnswerModel):
    """One task's models on one host."""

    default: str | None = Field(default=None, description="The model a request that names none gets; null: none.")
    loaded: list[str] = Field(default_factory=list, description="Models loaded now (warm: no load on first use).")
    allowed: list[str] | Literal["*"] = Field(
        default_factory=list, description="Models the host may load on request (`*`: any); loaded ones included."
    )

    def serves(self, model: str) -> bool:
        """Whether a request naming `model` may be sent here (loaded, or allowed to load)."""
        return model in self.loaded or self.allowed == "*" or model in self.allowed
