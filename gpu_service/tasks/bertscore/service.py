"""What a BERTScore request does, independent of HTTP: check limits, pick the model and its layer,
embed every sentence once, match the pairs; and the document counts for idf (`/bertscore/idf`)."""

from __future__ import annotations

import time
from typing import Any

import torch

from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreModelChoice,
    BertScoreRequest,
    BertScoreResponse,
    ScoreMeans,
)
from gpu_protocol.priority import by_size, estimate_tokens
from gpu_service.errors import Unavailable, Unprocessable
from gpu_service.limits import check_texts
from gpu_service.models.registry import LoadedModel, ModelKey, ModelRegistry
from gpu_service.runtime.result import Result
from gpu_service.scheduling.dedupe import distinct
from gpu_service.scheduling.jobs import Job, JobTracker, Timing
from gpu_service.scheduling.lanes import Lane, deadline_for, lane_for
from gpu_service.settings import Settings
from gpu_service.tasks.bertscore.engine import (
    BertScoreEngine,
    baseline,
    default_layers,
    model_for_lang,
    settings_hash,
)


class BertScorer:
    """The BERTScore task's service (built once by the service's state)."""

    def __init__(self, settings: Settings, registry: ModelRegistry, jobs: JobTracker) -> None:
        self.settings = settings
        self.registry = registry
        self.jobs = jobs

    def bertscore_key(self, name: str, num_layers: int | None) -> tuple[ModelKey, int]:
        """The model key for BERTScore with `name` (checked against the policy) at `num_layers`,
        or when that is None: BERTSCORE_NUM_LAYERS for the operator's default, else bert-score's table."""
        self.registry.policy.check(name)
        canonical = self.registry.policy.canonical(name)
        if num_layers is None:
            is_default = canonical == self.registry.policy.canonical(self.settings.model_bertscore)
            if is_default and self.settings.bertscore_num_layers is not None:
                num_layers = self.settings.bertscore_num_layers
            else:
                try:
                    num_layers = default_layers(canonical)
                except Unprocessable:
                    if not is_default:
                        raise
                    # The host's configuration, not the caller's request, is at fault: 503, so a
                    # pool tries another host.
                    raise Unavailable(
                        f"this host's default BERTScore model {canonical!r} has no layer configured: it is not "
                        "in bert-score's table of tuned layers, so the operator must set BERTSCORE_NUM_LAYERS "
                        "(or the request must pass num_layers)"
                    ) from None
        return self.registry.key("bertscore", name, num_layers), num_layers

    def _bertscore_model(self, choice: BertScoreModelChoice) -> tuple[ModelKey, int, str]:
        """The model a BERTScore request is scored with, its layer, and the request's language."""
        lang = (choice.lang or self.settings.bertscore_default_lang).lower()
        if choice.model_type:
            name = choice.model_type
        elif choice.lang and lang != self.settings.bertscore_default_lang.lower():
            name = model_for_lang(lang)
        else:
            name = self.settings.model_bertscore
        key, num_layers = self.bertscore_key(name, choice.num_layers)
        return key, num_layers, lang

    async def bertscore_idf(self, req: BertScoreIdfRequest) -> Result[BertScoreIdfResponse]:
        """Document frequencies of `req.sentences` for idf; a caller merges the counts of many chunks."""
        check_texts("sentences", req.sentences, self.settings)
        key, _, _ = self._bertscore_model(req)
        async with self.registry.use(key) as loaded:
            started = time.monotonic()
            lane = lane_for(by_size(items=len(req.sentences), tokens=estimate_tokens(req.sentences)))
            counts = await loaded.prepare(loaded.engine_as(BertScoreEngine).document_counts, req.sentences, lane=lane)
        return Result(BertScoreIdfResponse(model=key.name, documents=counts.documents, counts=counts.counts),
                      model=key.name, timing=Timing(inference_s=time.monotonic() - started))

    async def bertscore(self, req: BertScoreRequest) -> Result[BertScoreResponse]:
        check_texts("candidates", req.candidates, self.settings)
        check_texts("references", req.references, self.settings)
        deadline = deadline_for(self.settings.request_timeout_s)
        key, num_layers, lang = self._bertscore_model(req)
        rescale_vals, custom_baseline = None, False
        if req.rescale_with_baseline:
            rescale_vals, custom_baseline = baseline(key.name, lang, num_layers, self.settings.baseline_dirs)
        if req.idf_sentences is not None:
            check_texts("idf_sentences", req.idf_sentences, self.settings)

        job = self.jobs.start("bertscore", key.label, 0)
        try:
            async with self.registry.use(key) as loaded:
                engine = loaded.engine_as(BertScoreEngine)
                unique = list(dict.fromkeys([*req.candidates, *req.references]))
                # Its class while it is tokenized: by its characters, as the bridge counts them.
                job.lane = lane_for(by_size(items=len(req.candidates), tokens=estimate_tokens(unique)))
                encoded = dict(zip(unique, await loaded.prepare(engine.prepare, unique, lane=job.lane), strict=True))
                job.lane = lane_for(by_size(items=len(req.candidates), tokens=sum(e.cost for e in encoded.values())))
                weights = await _idf_weights(loaded, engine, req, job.lane)
                embeddings = await _embeddings(loaded, engine, encoded, job, deadline)
                # Each sentence was embedded once; each distinct pair is matched once and its scores
                # fanned out, so equal pairs score bit-identically wherever they sit in the request.
                pairs = distinct(list(zip(req.candidates, req.references, strict=True)))
                candidates, references = (list(side) for side in zip(*pairs.values, strict=True))
                scores = await loaded.scheduler.call(
                    engine.greedy_match,
                    [embeddings[s] for s in candidates],
                    [encoded[s].ids for s in candidates],
                    [embeddings[s] for s in references],
                    [encoded[s].ids for s in references],
                    weights,
                )
                scores = scores[pairs.positions]
        finally:
            self.jobs.finish(job)
        if rescale_vals is not None:
            scores = (scores - rescale_vals) / (1 - rescale_vals)
        _require_finite(scores, req.idf)
        p, r, f = (scores[:, i].tolist() for i in range(3))
        response = BertScoreResponse(
            precision=p,
            recall=r,
            f1=f,
            mean=ScoreMeans(precision=_mean(p), recall=_mean(r), f1=_mean(f)),
            model=key.name,
            num_layers=num_layers,
            hash=settings_hash(key.name, num_layers, req.idf, req.rescale_with_baseline, custom_baseline),
            truncated=sum(encoded[s].truncated for s in [*req.candidates, *req.references]),
        )
        return Result(response, model=key.name, timing=job.timing(), truncated=response.truncated)


async def _idf_weights(loaded: LoadedModel, engine: BertScoreEngine, req: BertScoreRequest,
                       lane: Lane) -> dict[int, float]:
    """The token weights a BERTScore request asks for: idf from its counts or sentences, or uniform."""
    if req.idf_counts is not None:
        return engine.idf_weights(req.idf_counts)
    if req.idf:
        counted = await loaded.prepare(engine.document_counts, req.idf_sentences or req.references, lane=lane)
        return engine.idf_weights(counted)
    return engine.uniform_weights()


async def _embeddings(
    loaded: LoadedModel, engine: BertScoreEngine, encoded: dict[str, Any], job: Job, deadline: float
) -> dict[str, torch.Tensor]:
    """Every sentence's token embeddings: from the engine's cache, the rest in one submission."""
    embeddings = {s: e for s in encoded if (e := engine.cached(s)) is not None}
    missing = [s for s in encoded if s not in embeddings]
    job.total = len(missing)
    if missing:
        batch = [encoded[s] for s in missing]
        found = await loaded.scheduler.submit(batch, [e.cost for e in batch], job=job, deadline=deadline)
        for sentence, emb in zip(missing, found, strict=True):
            embeddings[sentence] = emb
            engine.remember(sentence, emb)
    return embeddings


def _require_finite(scores: torch.Tensor, idf: bool) -> None:
    bad = (~torch.isfinite(scores)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        # bert-score itself returns NaN here: a text whose tokens all weigh 0 (with idf, every
        # token of the references appears in all of them, e.g. a single reference).
        raise Unprocessable(
            f"BERTScore is undefined for pair(s) {bad[:10]}: every token of a text has weight 0"
            + (" (idf computed from too few or identical sentences; pass more idf_sentences or use idf=false)"
               if idf else " (the text has no scorable tokens)")
        )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)

