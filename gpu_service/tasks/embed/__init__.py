"""Embeddings (`/embed`, OpenAI's `/v1/embeddings` and `/v1/models`) and similarity (`/similarity`,
computed from the same embedding model on this host, so no vector travels)."""

from __future__ import annotations

from typing import Any

from gpu_service.models.engine import Engine
from gpu_service.models.registry import ModelKey
from gpu_service.runtime.state import ServiceState
from gpu_service.runtime.task import Hardware, Task
from gpu_service.tasks.embed import routes, similarity_routes
from gpu_service.tasks.embed.service import Embedder


def _engine(key: ModelKey, resolved: Any, hardware: Hardware) -> Engine:
    from gpu_service.tasks.embed.engine import EmbeddingEngine

    return EmbeddingEngine(resolved, hardware.device, fp16=hardware.half_precision)


def _service(state: ServiceState) -> Embedder:
    return Embedder(state.settings, state.registry, state.jobs)


TASK = Task(kind="embed", default_variable="MODEL_EMBED", engine=_engine, service=_service,
            routers=(routes.router, similarity_routes.router), capabilities=("embed", "similarity"))
