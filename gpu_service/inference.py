"""What a request does, independent of HTTP: check limits, pick the model, batch, score.

`app.py` maps routes onto these functions; keeping them apart means `/embed` and
the OpenAI-compatible `/v1/embeddings` share one code path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from gpu_service.bertscore import baseline, default_layers, model_for_lang, settings_hash
from gpu_service.embedding import postprocess
from gpu_service.errors import TooLarge, Unprocessable
from gpu_service.jobs import JobTracker
from gpu_service.models import ModelRegistry
from gpu_service.resolve import canonical_name
from gpu_service.schema import (
    BertScoreRequest,
    BertScoreResponse,
    ScoreMeans,
    SimilarityRequest,
    SimilarityResponse,
    top_matches,
)
from gpu_service.settings import Settings


@dataclass
class Timing:
    queue_s: float = 0.0
    inference_s: float = 0.0


@dataclass
class Embedded:
    vectors: torch.Tensor
    model: str
    truncated: int
    tokens: int
    timing: Timing


def check_texts(field: str, texts: list[str], settings: Settings) -> None:
    limits = settings.limits
    if len(texts) > limits.max_texts:
        raise TooLarge(
            f"{field} has {len(texts)} items; this service accepts at most {limits.max_texts} per request "
            "(GPU_MAX_TEXTS): split the request"
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise Unprocessable(
                f"{field}[{i}] has {len(text)} characters; at most {limits.max_text_chars} are allowed "
                "(GPU_MAX_TEXT_CHARS)"
            )


class Inference:
    def __init__(self, settings: Settings, registry: ModelRegistry, jobs: JobTracker) -> None:
        self.settings = settings
        self.registry = registry
        self.jobs = jobs

    def _deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

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
        checked: bool = False,
    ) -> Embedded:
        """Embed `texts`; `checked` means the caller already held them to the limits, field by field."""
        if not checked:
            check_texts("texts", texts, self.settings)
        deadline = self._deadline()
        key = self.registry.key("embed", model or self.settings.model_embed)
        job = self.jobs.start("embed", key.label, len(texts))
        try:
            async with self.registry.use(key) as loaded:
                engine = loaded.engine
                if dimensions is not None and dimensions > engine.dimensions:
                    raise Unprocessable(
                        f"dimensions={dimensions} is larger than model {key.label!r}'s {engine.dimensions}"
                    )
                if prompt_name is None and prompt is None and input_type in engine.prompts:
                    prompt_name = input_type  # the model's own prompt for this kind of text
                chosen_prompt = engine.prompt_for(prompt_name, prompt)
                tokenized = await loaded.prepare(engine.prepare, texts, chosen_prompt)
                rows = await loaded.scheduler.submit(
                    tokenized, [t.cost for t in tokenized], job=job, deadline=deadline
                )
        finally:
            self.jobs.finish(job)
        vectors = postprocess(torch.stack(rows), normalize, dimensions)
        return Embedded(
            vectors=vectors,
            model=key.label,
            truncated=sum(t.truncated for t in tokenized),
            tokens=sum(t.cost for t in tokenized),
            timing=_timing(job),
        )

    async def similarity(self, req: SimilarityRequest) -> tuple[SimilarityResponse, Timing]:
        """Cosine similarities from the embedding model, computed here so no vector leaves the host."""
        check_texts("texts", req.texts, self.settings)
        if req.texts_b is not None:
            check_texts("texts_b", req.texts_b, self.settings)
        if req.query is not None:
            check_texts("query", [req.query], self.settings)
        embedded = await self.embed(req.inputs(), model=req.model, checked=True)
        vectors, n = embedded.vectors, len(req.texts)
        response = SimilarityResponse(
            mode=req.mode, model=embedded.model, count=int(vectors.shape[0]), truncated=embedded.truncated
        )
        # Vectors are unit length, so cosine is a dot product; clamp the rounding just past +-1.
        if req.mode == "pairs":
            response.scores = (vectors[:n] * vectors[n:]).sum(dim=1).clamp(-1, 1).tolist()
        elif req.mode == "query":
            response.scores = (vectors[:n] @ vectors[n]).clamp(-1, 1).tolist()
            response.matches = top_matches(response.scores, req.top_k)
        else:
            response.matrix = (vectors @ vectors.T).clamp(-1, 1).tolist()
        return response, embedded.timing

    async def bertscore(self, req: BertScoreRequest) -> tuple[BertScoreResponse, Timing]:
        if len(req.candidates) != len(req.references):
            raise Unprocessable(
                f"candidates has {len(req.candidates)} items but references has {len(req.references)}; "
                "they pair up one to one, so the lengths must match"
            )
        check_texts("candidates", req.candidates, self.settings)
        check_texts("references", req.references, self.settings)
        deadline = self._deadline()
        lang = (req.lang or self.settings.bertscore_default_lang).lower()
        if req.model_type:
            name = req.model_type
        elif req.lang and lang != self.settings.bertscore_default_lang.lower():
            name = model_for_lang(lang)
        else:
            name = self.settings.model_bertscore
        num_layers = req.num_layers if req.num_layers is not None else default_layers(canonical_name(name))
        key = self.registry.key("bertscore", name, num_layers)
        rescale_vals, custom_baseline = None, False
        if req.rescale_with_baseline:
            rescale_vals, custom_baseline = baseline(key.name, lang, num_layers, self.settings.baseline_dirs)
        if req.idf_sentences is not None:
            if not req.idf:
                raise Unprocessable("idf_sentences is only used with idf=true")
            check_texts("idf_sentences", req.idf_sentences, self.settings)

        job = self.jobs.start("bertscore", key.label, 0)
        try:
            async with self.registry.use(key) as loaded:
                engine = loaded.engine
                unique = list(dict.fromkeys([*req.candidates, *req.references]))
                encoded = dict(zip(unique, await loaded.prepare(engine.prepare, unique), strict=True))
                if req.idf:
                    weights = await loaded.prepare(engine.idf_weights, req.idf_sentences or req.references)
                else:
                    weights = engine.uniform_weights()
                embeddings = {s: e for s in unique if (e := engine.cached(s)) is not None}
                missing = [s for s in unique if s not in embeddings]
                job.total = len(missing)
                if missing:
                    batch = [encoded[s] for s in missing]
                    found = await loaded.scheduler.submit(batch, [e.cost for e in batch], job=job, deadline=deadline)
                    for sentence, emb in zip(missing, found, strict=True):
                        embeddings[sentence] = emb
                        engine.remember(sentence, emb)
                scores = await loaded.scheduler.call(
                    engine.greedy_match,
                    [embeddings[s] for s in req.candidates],
                    [encoded[s].ids for s in req.candidates],
                    [embeddings[s] for s in req.references],
                    [encoded[s].ids for s in req.references],
                    weights,
                )
        finally:
            self.jobs.finish(job)
        if rescale_vals is not None:
            scores = (scores - rescale_vals) / (1 - rescale_vals)
        bad = (~torch.isfinite(scores)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            # bert-score itself returns NaN here: a text whose tokens all weigh 0 (with idf, every
            # token of the references appears in all of them, e.g. a single reference).
            raise Unprocessable(
                f"BERTScore is undefined for pair(s) {bad[:10]}: every token of a text has weight 0"
                + (" (idf computed from too few or identical sentences; pass more idf_sentences or use idf=false)"
                   if req.idf else " (the text has no scorable tokens)")
            )
        p, r, f = (scores[:, i].tolist() for i in range(3))
        truncated = sum(encoded[s].truncated for s in [*req.candidates, *req.references])
        response = BertScoreResponse(
            precision=p,
            recall=r,
            f1=f,
            mean=ScoreMeans(precision=_mean(p), recall=_mean(r), f1=_mean(f)),
            model=key.name,
            num_layers=num_layers,
            hash=settings_hash(key.name, num_layers, req.idf, req.rescale_with_baseline, custom_baseline),
            truncated=truncated,
        )
        return response, _timing(job)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _timing(job: object) -> Timing:
    started = getattr(job, "started", 0.0)
    first = getattr(job, "first_batch_at", None)
    return Timing(queue_s=(first - started) if first else 0.0, inference_s=getattr(job, "compute_s", 0.0))
