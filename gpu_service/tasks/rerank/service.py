"""What a rerank request does, independent of HTTP: check limits, pick the cross-encoder, score every pair.

Cohere's and Jina's `/v1/rerank`, Cohere's `/v2/rerank` and text-embeddings-inference's `/rerank`
share `Reranker.rerank`; they differ only in their shapes (routes.py, routes_v2.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpu_protocol.priority import rerank_by_size
from gpu_service.errors import ModelNotFound, Unprocessable
from gpu_service.limits import check_texts
from gpu_service.models.catalog import DOCUMENTED_RERANKERS
from gpu_service.models.registry import ModelRegistry
from gpu_service.runtime.result import Result
from gpu_service.scheduling.dedupe import distinct
from gpu_service.scheduling.jobs import JobTracker
from gpu_service.scheduling.lanes import deadline_for, lane_for
from gpu_service.settings import Settings
from gpu_service.tasks.rerank.engine import RerankEngine


@dataclass(frozen=True)
class Ranking:
    logits: list[float]
    """One per input document, in input order."""
    order: list[int]
    """Input positions, best first by the logit; equal logits in input order."""


class Reranker:
    """The rerank task's service (built once by the service's state)."""

    def __init__(self, settings: Settings, registry: ModelRegistry, jobs: JobTracker) -> None:
        self.settings = settings
        self.registry = registry
        self.jobs = jobs

    async def rerank(
        self, query: str, documents: list[str], *, model: str | None, field: str = "documents", truncate: bool = True,
        doc_tokens: int | None = None,
    ) -> Result[Ranking]:
        """Score each (query, document) pair with a cross-encoder; a repeated document is scored once.

        `field` names the documents in errors; with `truncate=False` a pair longer than the
        model's maximum is refused (text-embeddings-inference's default) instead of cut; `doc_tokens`
        cuts each document to that many tokens first (Cohere v2's `max_tokens_per_doc`)."""
        check_texts(field, documents, self.settings)
        check_texts("query", query, self.settings)
        deadline = deadline_for(self.settings.request_timeout_s)
        key = self.registry.key("rerank", model or self._default_reranker())
        once = distinct(documents)  # a repeated document is scored once (see dedupe.py)
        job = self.jobs.start("rerank", key.label, len(once.values))
        try:
            async with self.registry.use(key) as loaded:
                engine = loaded.engine_as(RerankEngine)
                job.lane = lane_for(rerank_by_size(documents=len(documents)))
                prepared = await loaded.prepare(engine.prepare, query, once.values, doc_tokens, lane=job.lane)
                pairs = once.fan_out(prepared)  # one per document again, for the checks and counts
                if not truncate:
                    too_long = next((i for i, pair in enumerate(pairs) if pair.truncated), None)
                    if too_long is not None:
                        raise Unprocessable(
                            f"{field}[{too_long}], together with the query, is longer than the {engine.max_length} "
                            f"tokens model {key.label!r} reads; send truncate=true to cut it, or a shorter text"
                        )
                logits = await loaded.scheduler.submit(prepared, [p.cost for p in prepared], job=job, deadline=deadline)
        finally:
            self.jobs.finish(job)
        scores = once.fan_out(logits)
        return Result(
            Ranking(logits=scores, order=sorted(range(len(scores)), key=lambda i: (-scores[i], i))),
            model=key.label,
            truncated=sum(pair.truncated for pair in pairs),
            tokens=sum(pair.cost for pair in pairs),
            timing=job.timing(),
        )

    def _default_reranker(self) -> str:
        if self.settings.model_rerank:
            return self.settings.model_rerank
        raise ModelNotFound(
            "no reranker is configured on this host: set MODEL_RERANK=<name or directory> on the service to a "
            f"cross-encoder (allowed by default: {', '.join(DOCUMENTED_RERANKERS)}), or name an allowed one in `model`"
        )
