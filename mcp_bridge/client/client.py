"""What the tools call: embeddings, similarity, reranking and BERTScore over the host pool, and the fleet's views.

Large calls are sharded across the pool; each shard is one pool request whose body each
host's exchange for the operation builds and whose answer it reads and checks (counts, dimensions, numbers)
before anything reaches the agent: a host that answers garbage is treated as a failed
host, not passed on. Vectors stay numpy blocks (`VectorBlock`) from the host's bytes to
the tool's encoding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreRequest,
    BertScoreResponse,
    IdfCounts,
    ScoreMeans,
)
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.rerank import RerankRequest, RerankResponse
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse, top_matches
from gpu_protocol.speech_synthesis import SpeechRequest
from mcp_bridge.client.fleet import Fleet
from mcp_bridge.client.reranking import merge
from mcp_bridge.client.results import (
    EmbedResult,
    RerankOutcome,
    ScoreResult,
    SimilarityResult,
    TranscribeOutcome,
)
from mcp_bridge.client.shard_runner import Dispatch, ShardRunner
from mcp_bridge.client.sharding import Progress, split
from mcp_bridge.client.speech_synthesis import Speaker, SpeechStream
from mcp_bridge.client.transcription import Transcriber
from mcp_bridge.client.views import FleetStatus, HealthRow, InfoRow
from mcp_bridge.config import BridgeConfig
from mcp_bridge.pool.errors import PoolError
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.routing import Need
from mcp_bridge.protocols.exchange import BERTSCORE, BERTSCORE_IDF, EMBED, RERANK, SIMILARITY
from mcp_bridge.protocols.speech import AudioRequest
from mcp_bridge.protocols.vectors import VectorBlock, join


class GpuClient:
    def __init__(self, config: BridgeConfig, pool: HostPool, *, dispatch: Dispatch = "rates") -> None:
        self.config = config
        self.pool = pool
        self.fleet = Fleet(pool)
        self.shards = ShardRunner(pool, config.shardSize, dispatch)
        self.transcriber = Transcriber(config, pool, self.shards)
        self.speaker = Speaker(config, pool)

    def deadline(self) -> float:
        return self.pool.clock() + self.config.timeout

    # ------------------------------------------------------------------ embeddings

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str | None = None,
        normalize: bool = True,
        dimensions: int | None = None,
        host: str | None = None,
        progress: Progress | None = None,
        input_type: str | None = None,
    ) -> EmbedResult:
        """Embed `texts` (for Python callers; raises pydantic's ValidationError on bad input).

        `input_type` (query, document, ...) selects the model's prompt of that name on gpu-service
        hosts that define one; openai/tei hosts are not told."""
        request = EmbedRequest(texts=list(texts), model=model, normalize=normalize, dimensions=dimensions,
                               input_type=input_type)
        return await self.embed_request(request, host=host, progress=progress)

    async def embed_request(
        self, request: EmbedRequest, *, host: str | None = None, progress: Progress | None = None
    ) -> EmbedResult:
        """Embed an already validated request; shards are copies of it, not validated again."""
        started = time.perf_counter()
        model = request.model or self.config.models.embed
        deadline = self.deadline()

        async def run_shard(shard: Sequence[str], index: int, prefer: str | None) -> tuple[VectorBlock, str]:
            sub = request.model_copy(update={"texts": list(shard), "model": model})
            block, chosen = await self.pool.send(EMBED, sub, deadline=deadline, pin=host, prefer=prefer)
            return block.computed_on(chosen.name), chosen.name

        blocks = await self.shards.run(Need("embed", model), request.texts, run_shard, kind="embed", pin=host,
                                       progress=progress)
        widths = {b.dimensions for b in blocks}
        if len(widths) > 1:
            raise PoolError(
                f"hosts returned vectors of different sizes {sorted(widths)}: they serve different models "
                "under the same name; pin a host (host=...) or name the model explicitly"
            )
        return EmbedResult(join(blocks), seconds=time.perf_counter() - started)

    # ------------------------------------------------------------------ similarity

    async def similarity(
        self, request: SimilarityRequest, *, host: str | None = None, progress: Progress | None = None
    ) -> SimilarityResult:
        """Similarities computed on the hosts: pairs and query calls are sharded (each shard
        scores its own texts, the bridge ranks the union), a matrix goes to one host."""
        started = time.perf_counter()
        if request.model is None and self.config.models.embed:
            request = request.model_copy(update={"model": self.config.models.embed})
        deadline = self.deadline()
        used: set[str] = set()
        answers: list[SimilarityResponse] = []

        async def ask(sub: SimilarityRequest, prefer: str | None = None) -> tuple[SimilarityResponse, str]:
            answer, chosen = await self.pool.send(SIMILARITY, sub, deadline=deadline, pin=host, prefer=prefer)
            used.add(chosen.name)
            answers.append(answer)
            return answer, chosen.name

        if request.mode == "matrix":
            response, _ = await ask(request)
        else:
            async def run_shard(shard: Sequence[int], index: int, prefer: str | None) -> tuple[list[float], str]:
                lo, hi = shard[0], shard[-1] + 1
                sub = request.model_copy(update={
                    "texts": request.texts[lo:hi],
                    "texts_b": request.texts_b[lo:hi] if request.texts_b is not None else None,
                })
                answer, served = await ask(sub, prefer)
                return answer.scores or [], served

            parts = await self.shards.run(Need("embed", request.model), range(len(request.texts)), run_shard,
                                          kind="similarity", pin=host, progress=progress)
            scores = [score for part in parts for score in part]
            response = SimilarityResponse(
                mode=request.chosen_mode, model=answers[0].model, scores=scores,
                count=sum(a.count for a in answers), truncated=sum(a.truncated for a in answers),
                matches=top_matches(scores, request.top_k) if request.mode == "query" else None,
            )
        return SimilarityResult(response=response, hosts=sorted(used), seconds=time.perf_counter() - started)

    # ------------------------------------------------------------------ reranking

    async def rerank(
        self, request: RerankRequest, *, host: str | None = None, progress: Progress | None = None
    ) -> RerankOutcome:
        """Documents sharded across the hosts that rerank; every shard scores all of its documents
        and the bridge merges them, so `top_n` is exactly one host's ranking of everything."""
        started = time.perf_counter()
        deadline = self.deadline()
        used: set[str] = set()
        answers: list[tuple[int, RerankResponse]] = []

        async def run_shard(shard: Sequence[int], index: int, prefer: str | None) -> tuple[list[float], str]:
            lo, hi = shard[0], shard[-1] + 1
            sub = request.model_copy(update={"documents": request.documents[lo:hi]})
            answer, chosen = await self.pool.send(RERANK, sub, deadline=deadline, pin=host, prefer=prefer)
            used.add(chosen.name)
            answers.append((lo, answer))
            return [r.relevance_score for r in answer.results], chosen.name

        await self.shards.run(Need("rerank", request.model), range(len(request.documents)), run_shard, kind="rerank",
                              pin=host, progress=progress)
        return RerankOutcome(merge(request, sorted(answers, key=lambda pair: pair[0])), hosts=sorted(used),
                             seconds=time.perf_counter() - started)

    # ------------------------------------------------------------------ BERTScore

    async def bertscore(self, request: BertScoreRequest, progress: Progress | None = None) -> ScoreResult:
        started = time.perf_counter()
        if request.model_type is None and self.config.models.bertscore and request.lang is None:
            request = request.model_copy(update={"model_type": self.config.models.bertscore})
        deadline = self.deadline()
        if request.idf and request.idf_counts is None:
            # Shards must share one idf table, computed from *all* references as one call would:
            # hosts count documents per chunk, the counts add up, every shard gets the total.
            counts = await self._idf_counts(request, request.idf_sentences or request.references, deadline)
            request = request.model_copy(update={"idf_sentences": None, "idf_counts": counts})
        pairs = list(zip(request.candidates, request.references, strict=True))
        used: set[str] = set()
        answers: list[BertScoreResponse] = []

        async def run_shard(
            shard: Sequence[tuple[str, str]], index: int, prefer: str | None
        ) -> tuple[list[tuple[float, float, float]], str]:
            sub = request.model_copy(update={"candidates": [c for c, _ in shard], "references": [r for _, r in shard]})
            answer, chosen = await self.pool.send(BERTSCORE, sub, deadline=deadline, prefer=prefer)
            used.add(chosen.name)
            answers.append(answer)
            return list(zip(answer.precision, answer.recall, answer.f1, strict=True)), chosen.name

        parts = await self.shards.run(Need("bertscore", request.model_type), pairs, run_shard, kind="bertscore",
                                      progress=progress)
        p, r, f = (list(col) for col in zip(*(s for part in parts for s in part), strict=True))
        head = answers[0]
        response = BertScoreResponse(
            precision=p, recall=r, f1=f,
            mean=ScoreMeans(precision=sum(p) / len(p), recall=sum(r) / len(r), f1=sum(f) / len(f)),
            model=head.model, num_layers=head.num_layers, hash=head.hash,
            truncated=sum(a.truncated for a in answers),
        )
        return ScoreResult(response=response, hosts=sorted(used), seconds=time.perf_counter() - started)

    async def _idf_counts(self, request: BertScoreRequest, sentences: Sequence[str], deadline: float) -> IdfCounts:
        """Document frequencies of `sentences` for `request`'s model, counted in shards across the pool
        (one chunk per shard, each a list of sentences) and added up."""

        async def count(chunk: Sequence[Sequence[str]], index: int, prefer: str | None) -> tuple[list[IdfCounts], str]:
            sub = BertScoreIdfRequest(
                sentences=list(chunk[0]), lang=request.lang, model_type=request.model_type,
                num_layers=request.num_layers,
            )
            counted, chosen = await self.pool.send(BERTSCORE_IDF, sub, deadline=deadline, prefer=prefer)
            return [counted], chosen.name

        chunks = split(sentences, self.config.shardSize)
        parts = await self.shards.run(Need("bertscore", request.model_type), chunks, count, kind="bertscore-idf",
                                      shard_size=1)
        return IdfCounts.merge(counted for part in parts for counted in part)

    # ------------------------------------------------------------------ speech to text

    async def transcribe(
        self, request: AudioRequest, *, host: str | None = None, progress: Progress | None = None
    ) -> TranscribeOutcome:
        """`request`'s audio as text with timed segments; a long recording is cut at silences and its
        parts transcribed on several hosts at once (`mcp_bridge.client.transcription`)."""
        return await self.transcriber.transcribe(request, deadline=self.deadline(), host=host, progress=progress)

    # ------------------------------------------------------------------ speech synthesis

    async def speech(self, request: SpeechRequest) -> SpeechStream:
        """`request`'s audio, read from the stream as its parts are spoken on the pool, in order
        (`mcp_bridge.client.speech_synthesis`); FormatUnavailable when the bridge cannot make its format."""
        return await self.speaker.stream(request)

    # ------------------------------------------------------------------ fleet views

    async def health(self) -> list[HealthRow]:
        return await self.fleet.health()

    async def info(self) -> list[InfoRow]:
        return await self.fleet.info()

    async def status(self) -> FleetStatus:
        return await self.fleet.status()
