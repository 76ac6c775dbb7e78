"""The service's own views of itself: `/health`, `/info`, `/status`, and the shape of every error."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gpu_protocol.base import AnswerModel
from gpu_protocol.capabilities import TaskModels

ServiceStatus = Literal["ok", "degraded", "starting", "draining"]
"""ok: serving. degraded: serving, but a default model failed to load (`problems` says which and why).
starting/draining: not serving (503)."""

SERVING_STATUSES: tuple[str, ...] = ("ok", "degraded")
"""Statuses in which a host serves requests: /health answers 200 and the bridge routes to it."""


class HealthResponse(AnswerModel):
    status: ServiceStatus
    device: str
    problems: list[str] = Field(
        default_factory=list, description="Why the service is degraded, e.g. a default model that is not loaded."
    )


ModelKind = str
"""The kind of model: embed, bertscore, rerank, transcribe, or the kind of a task a newer host adds. A plain
string on the wire, as answers are read tolerantly: a bridge still reads the /info and /status of a host
that serves a task it does not know (a Literal would refuse the whole answer)."""


class ModelInfo(AnswerModel):
    name: str
    kind: ModelKind = Field(description="embed, bertscore, rerank, transcribe (or a newer host's own kind).")
    memory_mb: float
    in_use: int = 0
    default: bool = False
    last_used_s_ago: float | None = None
    dimensions: int | None = Field(default=None, description="Embedding models: the vector width.")
    max_tokens: int | None = Field(default=None, description="Embedding models: tokens read per text; the rest is cut.")
    prompts: list[str] | None = Field(
        default=None, description="Embedding models: the prompts the model defines that add text (prompt_name/input_type)."
    )
    speakers: list[str] | None = Field(
        default=None, description="Voice models with several speakers: their names. Added after 0.4.0."
    )


class InfoResponse(AnswerModel):
    device: str
    device_name: str
    vram_total_mb: float | None = None
    vram_free_mb: float | None = None
    half_precision: bool = Field(default=False, description="Embedding models run in fp16 (GPU_FP16).")
    torch_version: str
    cuda_version: str | None = None
    rocm_version: str | None = None
    default_models: dict[str, str | None]
    """The model each task uses when a request names none; `rerank` is null until MODEL_RERANK is set."""
    allowed_models: list[str] | Literal["*"]
    models: list[ModelInfo]
    limits: dict[str, int]
    protocol_version: int = Field(
        default=1, ge=1, description="The host's wire protocol version (gpu_protocol.versions); absent: 1 (0.3.0)."
    )
    capabilities: dict[str, TaskModels] | None = Field(
        default=None, description="Per task (embed, similarity, bertscore, rerank, transcribe): its models. "
        "Absent before protocol version 2."
    )


class JobStatus(AnswerModel):
    """One running request; `done`/`total` count items (texts, pairs), or seconds of audio for `transcribe`."""

    id: str
    kind: ModelKind
    model: str
    done: int
    total: int
    age_s: float


class StatusResponse(AnswerModel):
    status: ServiceStatus
    problems: list[str] = Field(default_factory=list, description="As in /health.")
    uptime_s: float
    queue_depth: int
    """Items (texts or pairs) waiting to be run, over all models."""
    active_jobs: list[JobStatus]
    models: list[ModelInfo]
    batches: dict[str, int]
    """Batches run so far, per model."""
    queued_by_class: dict[str, int] | None = Field(
        default=None, description="`queue_depth` per priority class (interactive, batch); absent from a host "
        "older than the classes (docs/sharing.md).")


class ErrorResponse(BaseModel):
    """Every error the service returns: `detail` says what was wrong and what is allowed."""

    detail: str | list[dict[str, object]]
