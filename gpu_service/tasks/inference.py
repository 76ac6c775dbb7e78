"""What a request does, independent of HTTP: check limits, pick the model, batch, score.

`app.py` maps routes onto these functions; keeping them apart means `/embed` and
the OpenAI-compatible `/v1/embeddings` share one code path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import torch

from gpu_protocol import validation
from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreModelChoice,
    BertScoreRequest,
    BertScoreResponse,
    ScoreMeans,
)
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse, top_matches
from gpu_service.errors import ModelNotFound, TooLarge, Unavailable, Unprocessable
from gpu_service.models.catalog import DOCUMENTED_RERANKERS
from gpu_service.models.registry import LoadedModel, ModelKey, ModelRegistry
from gpu_service.scheduling.dedupe import distinct
from gpu_service.scheduling.jobs import Job, JobTracker, Timing
from gpu_service.settings import Settings
from gpu_service.tasks.bertscore.engine import (
    BertScoreEngine,
    baseline,
    default_layers,
    model_for_lang,
    settings_hash,
)
from gpu_service.tasks.embed.engine import EmbeddingEngine, postprocess
from gpu_service.tasks.rerank.engine import RerankEngine


@dataclass
class Embedded:
    distinct_vectors: torch.Tensor
    """One row per distinct input (see dedupe.py)."""
    positions: list[int]
    """For every input, its row in `distinct_vectors`."""
    model: str
    truncated: int
    tokens: int
    timing: Timing

    @property
    def vectors(self) -> torch.Tensor:
        """One row per input, in input order; equal inputs get bit-identical rows."""
        if len(self.positions) == len(self.distinct_vectors):  # no duplicates: rows already in input order
            return self.distinct_vectors
        return self.distinct_vectors[self.positions]


@dataclass
class Reranked:
    logits: list[float]
    """One per input document, in input order."""
    order: list[int]
    """Input positions, best first by the logit; equal logits in input order."""
    model: str
    truncated: int
    tokens: int
    timing: Timing


def check_texts(field: str, texts: list[str] | str, settings: Settings) -> None:
    """The protocol's one texts rule (non-blank, GPU_MAX_TEXTS, GPU_MAX_TEXT_CHARS) as the service's
    errors; `texts` is a list of them, or one (a query)."""
    limits = settings.limits
    try:
        if isinstance(texts, str):
            validation.check_text(texts, field, max_text_chars=limits.max_text_chars)
        else:
            validation.check_texts(texts, field, max_texts=limits.max_texts, max_text_chars=limits.max_text_chars)
    except validation.TextsRejected as rejected:
        raise (TooLarge if rejected.status == 413 else Unprocessable)(rejected.message) from None


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
        field: str | None = "texts",
    ) -> Embedded:
        """Embed `texts`, held to the limits under the name `field` (None: the caller already held them,
        field by field)."""
        if field is not None:
            check_texts(field, texts, self.settings)
        deadline = self._deadline()
        key = self.registry.key("embed", model or self.settings.model_embed)
        # Equal texts are tokenized once, and texts the model sees alike (same token ids after
        # the prompt, lower-casing, truncation) are run once: see dedupe.py for why.
        texts_once = distinct(texts)
        job = self.jobs.start("embed", key.label, len(texts_once.values))
        try:
            async with self.registry.use(key) as loaded:
                engine = cast(EmbeddingEngine, loaded.engine)  # the registry builds a key's kind of engine
                if dimensions is not None and dimensions > engine.dimensions:
                    raise Unprocessable(
                        f"dimensions={dimensions} is larger than model {key.label!r}'s {engine.dimensions}"
                    )
                if prompt_name is None and prompt is None and input_type in engine.prompts:
                    prompt_name = input_type  # the model's own prompt for this kind of text
                chosen_prompt = engine.prompt_for(prompt_name, prompt)
                tokenized = await loaded.prepare(engine.prepare, texts_once.values, chosen_prompt)
                inputs_once = distinct([tuple(t.ids) for t in tokenized])
                items = [tokenized[i] for i in inputs_once.first]
                job.total = len(items)
                rows = await loaded.scheduler.submit(items, [t.cost for t in items], job=job, deadline=deadline)
        finally:
            self.jobs.finish(job)
        tokenized = texts_once.fan_out(tokenized)  # one per input again, for the counts below
        return Embedded(
            distinct_vectors=postprocess(torch.stack(rows), normalize, dimensions),
            positions=texts_once.fan_out(inputs_once.positions),
            model=key.label,
            truncated=sum(t.truncated for t in tokenized),
            tokens=sum(t.cost for t in tokenized),
            timing=job.timing(),
        )

    async def rerank(
        self, query: str, documents: list[str], *, model: str | None, field: str = "documents", truncate: bool = True,
        doc_tokens: int | None = None,
    ) -> Reranked:
        """Score each (query, document) pair with a cross-encoder; a repeated document is scored once.

        `field` names the documents in errors; with `truncate=False` a pair longer than the
        model's maximum is refused (text-embeddings-inference's default) instead of cut; `doc_tokens`
        cuts each document to that many tokens first (Cohere v2's `max_tokens_per_doc`)."""
        check_texts(field, documents, self.settings)
        check_texts("query", query, self.settings)
        deadline = self._deadline()
        key = self.registry.key("rerank", model or self._default_reranker())
        once = distinct(documents)  # a repeated document is scored once (see dedupe.py)
        job = self.jobs.start("rerank", key.label, len(once.values))
        try:
            async with self.registry.use(key) as loaded:
                engine = cast(RerankEngine, loaded.engine)
                prepared = await loaded.prepare(engine.prepare, query, once.values, doc_tokens)
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
        return Reranked(
            logits=scores,
            order=sorted(range(len(scores)), key=lambda i: (-scores[i], i)),
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

    async def similarity(self, req: SimilarityRequest) -> tuple[SimilarityResponse, Timing]:
        """Cosine similarities from the embedding model, computed here so no vector leaves the host."""
        check_texts("texts", req.texts, self.settings)
        if req.texts_b is not None:
            check_texts("texts_b", req.texts_b, self.settings)
        if req.query is not None:
            check_texts("query", req.query, self.settings)
        embedded = await self.embed(req.inputs(), model=req.model, field=None)
        # Scores are computed between distinct vectors and fanned out, so equal texts (and equal
        # pairs) get bit-identical scores and ties rank in input order on every machine.
        vectors, row, n = embedded.distinct_vectors, embedded.positions, len(req.texts)
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
        return response, embedded.timing

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

    async def bertscore_idf(self, req: BertScoreIdfRequest) -> BertScoreIdfResponse:
        """Document frequencies of `req.sentences` for idf; a caller merges the counts of many chunks."""
        check_texts("sentences", req.sentences, self.settings)
        key, _, _ = self._bertscore_model(req)
        async with self.registry.use(key) as loaded:
            counts = await loaded.prepare(cast(BertScoreEngine, loaded.engine).document_counts, req.sentences)
        return BertScoreIdfResponse(model=key.name, documents=counts.documents, counts=counts.counts)

    async def bertscore(self, req: BertScoreRequest) -> tuple[BertScoreResponse, Timing]:
        check_texts("candidates", req.candidates, self.settings)
        check_texts("references", req.references, self.settings)
        deadline = self._deadline()
        key, num_layers, lang = self._bertscore_model(req)
        rescale_vals, custom_baseline = None, False
        if req.rescale_with_baseline:
            rescale_vals, custom_baseline = baseline(key.name, lang, num_layers, self.settings.baseline_dirs)
        if req.idf_sentences is not None:
            check_texts("idf_sentences", req.idf_sentences, self.settings)

        job = self.jobs.start("bertscore", key.label, 0)
        try:
            async with self.registry.use(key) as loaded:
                engine = cast(BertScoreEngine, loaded.engine)
                unique = list(dict.fromkeys([*req.candidates, *req.references]))
                encoded = dict(zip(unique, await loaded.prepare(engine.prepare, unique), strict=True))
                weights = await _idf_weights(loaded, engine, req)
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
        return response, job.timing()


async def _idf_weights(loaded: LoadedModel, engine: BertScoreEngine, req: BertScoreRequest) -> dict[int, float]:
    """The token weights a BERTScore request asks for: idf from its counts or sentences, or uniform."""
    if req.idf_counts is not None:
        return engine.idf_weights(req.idf_counts)
    if req.idf:
        counted = await loaded.prepare(engine.document_counts, req.idf_sentences or req.references)
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

