"""Reranking with a cross-encoder: Cohere's and Jina's `/v1/rerank`, Cohere's `/v2/rerank` and
text-embeddings-inference's `/rerank`, one engine and one batcher."""

from __future__ import annotations

from typing import Any

from gpu_service.models.engine import Engine
from gpu_service.models.registry import ModelKey
from gpu_service.runtime.state import ServiceState
from gpu_service.runtime.task import Hardware, Task
from gpu_service.tasks.rerank import routes, routes_v2
from gpu_service.tasks.rerank.service import Reranker


def _engine(key: ModelKey, resolved: Any, hardware: Hardware) -> Engine:
    from gpu_service.tasks.rerank.engine import RerankEngine

    return RerankEngine(resolved, hardware.device, fp16=hardware.half_precision)


def _service(state: ServiceState) -> Reranker:
    return Reranker(state.settings, state.registry, state.jobs)


TASK = Task(kind="rerank", default_variable="MODEL_RERANK", engine=_engine, service=_service,
            routers=(routes.router, routes_v2.router))
