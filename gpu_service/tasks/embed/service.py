"""What an embedding or similarity request does, independent of HTTP: check limits, pick the model, batch.

`/embed` and OpenAI's `/v1/embeddings` share `Embedder.embed`; `/similarity` embeds with it and
scores here, so no vector leaves the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu_protocol.priority import by_size, estimate_tokens
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse, top_matches
from gpu_service.errors import Unprocessable
from gpu_service.limits import check_texts
from gpu_service.models.registry import ModelRegistry
from gpu_service.runtime.result import Result
from gpu_service.scheduling.dedupe import distinct
from gpu_service.scheduling.jobs import JobTracker
from gpu_service.scheduling.lanes import deadline_for, lane_for
from gpu_service.settings import Settings
from gpu_service.tasks.embed.engine import EmbeddingEngine, postprocess


@dataclass(frozen=True)
class Embedding:
    distinct_vectors: torch.Tensor
    """One row per distinct input (see dedupe.py)."""
    positions: list[int]
    """For every input, its row in `distinct_vectors`."""

    @property
    def vectors(self) -> torch.Tensor:
        """One row per input, in input order; equal inputs get bit-identical rows."""
        if len(self.positions) == len(self.distinct_vectors):  # no duplicates: rows already in input order
            return self.distinct_vectors
        return self.distinct_vectors[self.positions]


class Embedder:
    """The embed task's service (built once by the service's state)."""

    def __init__(self, settings: Settings, registry: ModelRegistry, jobs: JobTracker) -> None:
        self.settings = settings
        self.registry = registry
        self.jobs = jobs

    async def embed(
        self,
        texts: list[str],
        *,
        model: str | None,
        normalize: bool = True,
        dimensions: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        input_type: str | None = None,
        field: str | None = "texts",
    ) -> Result[Embedding]:
        """Embed `texts`, held to the limits under the name `field` (None: the caller already held them,
        field by field)."""
        if field is not None:
            check_texts(field, texts, self.settings)
        deadline = deadline_for(self.settings.request_timeout_s)
        key = self.registry.key("embed", model or self.settings.model_embed)
        # Equal texts are tokenized once, and texts the model sees alike (same token ids after
        # the prompt, lower-casing, truncation) are run once: see dedupe.py for why.
        texts_once = distinct(texts)
        job = self.jobs.start("embed", key.label, len(texts_once.values))
        try:
            async with self.registry.use(key) as loaded:
                engine = loaded.engine_as(EmbeddingEngine)
                if dimensions is not None and dimensions > engine.dimensions:
                    raise Unprocessable(
                        f"dimensions={dimensions} is larger than model {key.label!r}'s {engine.dimensions}"
                    )
                if prompt_name is None and prompt is None and input_type in engine.prompts:
                    prompt_name = input_type  # the model's own prompt for this kind of text
                chosen_prompt = engine.prompt_for(prompt_name, prompt)
                # Its class while it is tokenized: by its characters, as the bridge counts them.
                prep_lane = lane_for(by_size(items=len(texts), tokens=estimate_tokens(texts), input_type=input_type))
                tokenized = await loaded.prepare(engine.prepare, texts_once.values, chosen_prompt, lane=prep_lane)
                inputs_once = distinct([tuple(t.ids) for t in tokenized])
                items = [tokenized[i] for i in inputs_once.first]
                job.total = len(items)
                job.lane = lane_for(by_size(items=len(texts), tokens=sum(t.cost for t in tokenized),
                                            input_type=input_type))
                rows = await loaded.scheduler.submit(items, [t.cost for t in items], job=job, deadline=deadline)
        finally:
            self.jobs.finish(job)
        tokenized = texts_once.fan_out(tokenized)  # one per input again, for the counts below
        embedding = Embedding(
            distinct_vectors=postprocess(torch.stack(rows), normalize, dimensions),
            positions=texts_once.fan_out(inputs_once.positions),
        )
        return Result(
            embedding,
            model=key.label,
            truncated=sum(t.truncated for t in tokenized),
            tokens=sum(t.cost for t in tokenized),
            timing=job.timing(),
        )

    async def similarity(self, req: SimilarityRequest) -> Result[SimilarityResponse]:
        """Cosine similarities from the embedding model, computed here so no vector leaves the host."""
        check_texts("texts", req.texts, self.settings)
        if req.texts_b is not None:
            check_texts("texts_b", req.texts_b, self.settings)
        if req.query is not None:
            check_texts("query", req.query, self.settings)
        embedded = await self.embed(req.inputs(), model=req.model, field=None)
        # Scores are computed between distinct vectors and fanned out, so equal texts (and equal
        # pairs) get bit-identical scores and ties rank in input order on every machine.
        vectors, row, n = embedded.value.distinct_vectors, embedded.value.positions, len(req.texts)
        response = SimilarityResponse(
            mode=req.chosen_mode, model=embedded.model, count=len(row), truncated=embedded.truncated
        )
        # Vectors are unit length, so cosine is a dot product; clamp the rounding just past +-1.
        if req.mode == "pairs":
            pairs = distinct(list(zip(row[:n], row[n:], strict=True)))
            first, second = (list(side) for side in zip(*pairs.values, strict=True))
            scores = (vectors[first] * vectors[second]).sum(dim=1).clamp(-1, 1)
            response.scores = scores[pairs.positions].tolist()
        elif req.mode == "query":
            scores = (vectors @ vectors[row[n]]).clamp(-1, 1)
            response.scores = scores[row[:n]].tolist()
            response.matches = top_matches(response.scores, req.top_k)
        else:
            matrix = (vectors @ vectors.T).clamp(-1, 1)
            response.matrix = matrix[row][:, row].tolist()
        return Result(response, model=embedded.model, timing=embedded.timing, tokens=embedded.tokens,
                      truncated=embedded.truncated)
