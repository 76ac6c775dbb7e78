"""BERTScore (`/bertscore`) and the document counts for its idf (`/bertscore/idf`)."""

from __future__ import annotations

from typing import Any

from gpu_service.models.engine import Engine
from gpu_service.models.registry import ModelKey
from gpu_service.runtime.state import ServiceState
from gpu_service.runtime.task import Hardware, Task
from gpu_service.tasks.bertscore import routes
from gpu_service.tasks.bertscore.service import BertScorer


def _engine(key: ModelKey, resolved: Any, hardware: Hardware) -> Engine:
    from gpu_service.tasks.bertscore.engine import BertScoreEngine

    if key.num_layers is None:  # BertScorer.bertscore_key always picks one
        raise ValueError(f"BERTScore model {key.name!r} was asked for without its layer")
    return BertScoreEngine(resolved, key.num_layers, hardware.device)


def _service(state: ServiceState) -> BertScorer:
    return BertScorer(state.settings, state.registry, state.jobs)


def _default_key(state: ServiceState, name: str) -> ModelKey:
    """The default model at its configured layer (BERTSCORE_NUM_LAYERS, else bert-score's table)."""
    return state.service_of("bertscore", BertScorer).bertscore_key(name, None)[0]


TASK = Task(kind="bertscore", default_variable="MODEL_BERTSCORE", engine=_engine, service=_service,
            routers=(routes.router,), default_key=_default_key)
