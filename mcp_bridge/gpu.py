"""What the tools call: embeddings, BERTScore, health, info and status over the host pool.

Speaks our service's wire schema (`gpu_service.schema`) to `gpu-service` hosts and
the OpenAI embeddings API to `openai`/`tei` hosts, shards large calls across the pool,
and checks every answer (counts, dimensions, numbers) before it reaches the agent: a
host that answers garbage is treated as a failed host, not passed on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreRequest,
    BertScoreResponse,
    IdfCounts,
    ScoreMeans,
)
from gpu_protocol.embed import EmbedRequest, EmbedResponse
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse, top_matches
from mcp_bridge.answers import BadResponse, error_detail, parse_json
from mcp_bridge.config import BridgeConfig
from mcp_bridge.hosts import Host
from mcp_bridge.pool import HostPool, PoolError
from mcp_bridge.sharding import Progress, run_sharded, split

PROBE_TIMEOUT_S = 3.0


@dataclass
class EmbedResult:
    embeddings: list[list[float]]
    model: str
    dimensions: int
    hosts: list[str]
    truncated: int
    seconds: float


@dataclass
class ScoreResult:
    response: BertScoreResponse
    hosts: list[str]
    seconds: float


@dataclass
class SimilarityResult:
    response: SimilarityResponse
    hosts: list[str]
    seconds: float


@dataclass
class _Shard:
    vectors: list[list[float]]
    model: str
    truncated: int
    host: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _normalise(vectors: list[list[float]], dimensions: int | None) -> list[list[float]]:
    out = []
    for v in vectors:
        if dimensions is not None:
            v = v[:dimensions]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / norm for x in v])
    return out


def _openai_body(host: Host, texts: Sequence[str], model: str | None) -> dict[str, Any]:
    return {"input": list(texts), "model": host.config.model or model or "default", "encoding_format": "float"}


def _openai_vectors(data: Any, count: int, normalize: bool, dimensions: int | None) -> list[list[float]]:
    rows = sorted(data["data"], key=lambda d: d["index"])
    vectors = [[float(x) for x in row["embedding"]] for row in rows]
    if normalize or dimensions is not None:
        vectors = _normalise(vectors, dimensions)
    _check_vectors(vectors, count, dimensions)
    return vectors


def _dot(a: list[float], b: list[float]) -> float:
    return max(-1.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True))))


def similarity_from_vectors(request: SimilarityRequest, vectors: list[list[float]], model: str) -> SimilarityResponse:
    """What a gpu-service host's /similarity answers, from unit vectors: for hosts that only embed
    (openai/tei), whose vectors then do travel to the bridge."""
    n = len(request.texts)
    out = SimilarityResponse(mode=request.chosen_mode, model=model, count=len(vectors), truncated=0)
    if request.mode == "pairs":
        out.scores = [_dot(vectors[i], vectors[n + i]) for i in range(n)]
    elif request.mode == "query":
        out.scores = [_dot(vectors[i], vectors[n]) for i in range(n)]
        out.matches = top_matches(out.scores, request.top_k)
    else:
        out.matrix = [[_dot(a, b) for b in vectors] for a in vectors]
    return out


def _check_similarity(answer: SimilarityResponse, request: SimilarityRequest) -> None:
    n = len(request.texts)
    if answer.mode != request.mode:
        raise BadResponse(f"answer is for mode={answer.mode}, mode={request.mode} was asked")
    if request.mode == "matrix":
        rows = answer.matrix or []
        if len(rows) != n or any(len(row) != n for row in rows):
            raise BadResponse(f"matrix is not {n} x {n}")
        numbers = [x for row in rows for x in row]
    else:
        numbers = answer.scores or []
        if len(numbers) != n:
            raise BadResponse(f"{len(numbers)} scores for {n} texts")
    if not all(math.isfinite(x) and -1.001 <= x <= 1.001 for x in numbers):
        raise BadResponse("a similarity outside [-1, 1]")


def _check_vectors(vectors: list[list[float]], count: int, dimensions: int | None) -> None:
    if len(vectors) != count:
        raise BadResponse(f"{len(vectors)} vectors for {count} texts")
    if not vectors:
        return
    width = len(vectors[0])
    if width == 0 or any(len(v) != width for v in vectors):
        raise BadResponse("vectors of different lengths")
    if dimensions is not None and width != dimensions:
        raise BadResponse(f"vectors have {width} dimensions, {dimensions} were asked for")
    for v in vectors:
        for x in v:
            if not math.isfinite(x):
                raise BadResponse("non-finite number in a vector")


class GpuClient:
    def __init__(self, config: BridgeConfig, pool: HostPool) -> None:
        self.config = config
        self.pool = pool

    def deadline(self) -> float:
        return self.pool._clock() + self.config.timeout

    def _parallel(self, task: str) -> int:
        hosts = [h for h in self.pool.hosts if h.can_serve(task)]
        return max(1, sum(h.max_concurrent or 2 for h in hosts))

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
    ) -> EmbedResult:
        """Embed `texts` (for Python callers; raises pydantic's ValidationError on bad input)."""
        request = EmbedRequest(texts=list(texts), model=model, normalize=normalize, dimensions=dimensions)
        return await self.embed_request(request, host=host, progress=progress)

    async def embed_request(
        self, request: EmbedRequest, *, host: str | None = None, progress: Progress | None = None
    ) -> EmbedResult:
        """Embed an already validated request; shards are copies of it, not validated again."""
        started = time.perf_counter()
        model = request.model or self.config.models.embed
        normalize, dimensions = request.normalize, request.dimensions
        deadline = self.deadline()
        used: list[str] = []
        shards: list[_Shard] = []

        async def run_shard(shard: Sequence[str], index: int) -> list[list[float]]:
            count = len(shard)
            body = request.model_copy(
                update={"texts": list(shard), "model": model, "encoding_format": "base64"}
            ).model_dump(exclude_none=True)

            def path_for(h: Host) -> tuple[str, Any]:
                if h.kind == "gpu-service":
                    return "/embed", body
                return "/v1/embeddings", _openai_body(h, shard, model)

            def parse_for(h: Host, response: httpx.Response) -> _Shard:
                data = parse_json(response)
                if h.kind == "gpu-service":
                    parsed = EmbedResponse.model_validate(data)
                    vectors = parsed.vectors()
                    _check_vectors(vectors, count, dimensions or parsed.dimensions)
                    if parsed.count != count:
                        raise BadResponse(f"answer says count={parsed.count} for {count} texts")
                    return _Shard(vectors, parsed.model, parsed.truncated, h.name)
                vectors = _openai_vectors(data, count, normalize, dimensions)
                return _Shard(vectors, str(data.get("model") or h.config.model or model), 0, h.name)

            result, _ = await self.pool.request(
                "embed", "POST", "/embed", path_for=path_for, parse_for=parse_for,
                deadline=deadline, pin=host,
            )
            shards.append(result)
            used.append(result.host)
            return result.vectors

        vectors = await run_sharded(
            request.texts, self.config.shardSize, run_shard, parallel=self._parallel("embed"), progress=progress
        )
        widths = {len(v) for v in vectors}
        if len(widths) > 1:
            raise PoolError(
                f"hosts returned vectors of different sizes {sorted(widths)}: they serve different models "
                "under the same name; pin a host (host=...) or name the model explicitly"
            )
        return EmbedResult(
            embeddings=vectors,
            model=shards[0].model if shards else (model or ""),
            dimensions=widths.pop() if widths else 0,
            hosts=sorted(set(used)),
            truncated=sum(s.truncated for s in shards),
            seconds=time.perf_counter() - started,
        )

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
        used: list[str] = []
        answers: list[SimilarityResponse] = []

        async def ask(sub: SimilarityRequest) -> SimilarityResponse:
            def path_for(h: Host) -> tuple[str, Any]:
                if h.kind == "gpu-service":
                    return "/similarity", sub.model_dump(exclude_none=True)
                return "/v1/embeddings", _openai_body(h, sub.inputs(), sub.model)

            def parse_for(h: Host, response: httpx.Response) -> SimilarityResponse:
                data = parse_json(response)
                if h.kind == "gpu-service":
                    answer = SimilarityResponse.model_validate(data)
                else:
                    vectors = _openai_vectors(data, len(sub.inputs()), True, None)
                    model = str(data.get("model") or h.config.model or sub.model)
                    answer = similarity_from_vectors(sub, vectors, model)
                _check_similarity(answer, sub)
                return answer

            answer, chosen = await self.pool.request(
                "embed", "POST", "/similarity", path_for=path_for, parse_for=parse_for, deadline=deadline, pin=host
            )
            used.append(chosen.name)
            answers.append(answer)
            return answer

        if request.mode == "matrix":
            response = await ask(request)
        else:
            async def run_shard(shard: Sequence[int], index: int) -> list[float]:
                lo, hi = shard[0], shard[-1] + 1
                sub = request.model_copy(update={
                    "texts": request.texts[lo:hi],
                    "texts_b": request.texts_b[lo:hi] if request.texts_b is not None else None,
                })
                return (await ask(sub)).scores or []

            scores = await run_sharded(
                range(len(request.texts)), self.config.shardSize, run_shard,
                parallel=self._parallel("embed"), progress=progress,
            )
            response = SimilarityResponse(
                mode=request.chosen_mode, model=answers[0].model, scores=scores,
                count=sum(a.count for a in answers), truncated=sum(a.truncated for a in answers),
                matches=top_matches(scores, request.top_k) if request.mode == "query" else None,
            )
        return SimilarityResult(response=response, hosts=sorted(set(used)), seconds=time.perf_counter() - started)

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
        used: list[str] = []
        answers: list[BertScoreResponse] = []

        async def run_shard(shard: Sequence[tuple[str, str]], index: int) -> list[tuple[float, float, float]]:
            body = request.model_copy(
                update={"candidates": [c for c, _ in shard], "references": [r for _, r in shard]}
            ).model_dump(exclude_none=True)

            def parse(response: httpx.Response) -> BertScoreResponse:
                parsed = BertScoreResponse.model_validate(parse_json(response))
                if not (len(parsed.precision) == len(parsed.recall) == len(parsed.f1) == len(shard)):
                    raise BadResponse(f"scores for {len(parsed.f1)} pairs, {len(shard)} were sent")
                if not all(math.isfinite(x) for x in (*parsed.precision, *parsed.recall, *parsed.f1)):
                    raise BadResponse("non-finite score")
                return parsed

            parsed, host = await self.pool.request(
                "bertscore", "POST", "/bertscore", json_body=body, parse=parse, deadline=deadline
            )
            used.append(host.name)
            answers.append(parsed)
            return list(zip(parsed.precision, parsed.recall, parsed.f1, strict=True))

        scores = await run_sharded(
            pairs, self.config.shardSize, run_shard, parallel=self._parallel("bertscore"), progress=progress
        )
        p, r, f = (list(col) for col in zip(*scores, strict=True))
        head = answers[0]
        response = BertScoreResponse(
            precision=p, recall=r, f1=f,
            mean=ScoreMeans(precision=sum(p) / len(p), recall=sum(r) / len(r), f1=sum(f) / len(f)),
            model=head.model, num_layers=head.num_layers, hash=head.hash,
            truncated=sum(a.truncated for a in answers),
        )
        return ScoreResult(response=response, hosts=sorted(set(used)), seconds=time.perf_counter() - started)

    async def _idf_counts(self, request: BertScoreRequest, sentences: Sequence[str], deadline: float) -> IdfCounts:
        """Document frequencies of `sentences` for `request`'s model, counted in shards across the pool
        (one chunk per shard, each a list of sentences) and added up."""

        async def count(chunk: Sequence[Sequence[str]], index: int) -> list[IdfCounts]:
            body = BertScoreIdfRequest(
                sentences=list(chunk[0]), lang=request.lang, model_type=request.model_type,
                num_layers=request.num_layers,
            ).model_dump(exclude_none=True)

            def parse(response: httpx.Response) -> IdfCounts:
                parsed = BertScoreIdfResponse.model_validate(parse_json(response))
                if parsed.documents != len(chunk[0]):
                    raise BadResponse(f"counted {parsed.documents} sentences, {len(chunk[0])} were sent")
                return parsed

            counted, _ = await self.pool.request(
                "bertscore", "POST", "/bertscore/idf", json_body=body, parse=parse, deadline=deadline
            )
            return [counted]

        chunks = split(sentences, self.config.shardSize)
        parts = await run_sharded(chunks, 1, count, parallel=self._parallel("bertscore"))
        return IdfCounts.merge(parts)

    # ------------------------------------------------------------------ fleet views

    async def health(self) -> list[dict[str, Any]]:
        async def probe(h: Host) -> dict[str, Any]:
            started = time.perf_counter()
            response = await h.client.get(h.health_path, timeout=PROBE_TIMEOUT_S)
            body = parse_json(response) if response.headers.get("content-type", "").startswith("application/json") else {}
            ok = h.is_healthy_answer(response.status_code, body)
            if ok:
                h.note_health(body)
            return {
                "ok": ok,
                "status": body.get("status", response.status_code),
                "device": body.get("device"),
                "problems": h.problems_in(body),
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }

        rows = []
        for host, result, error in await self.pool.each(probe, PROBE_TIMEOUT_S + 0.5):
            row = {"name": host.name, "url": host.url, "type": host.kind}
            row.update(result or {"ok": False, "error": error})
            rows.append(row)
        return rows

    async def _get_each(self, path: str) -> list[tuple[Host, Any, str | None]]:
        async def get(h: Host) -> Any:
            if h.kind != "gpu-service":
                raise PoolError(f"{h.kind} host: no {path}")
            response = await h.client.get(path, timeout=PROBE_TIMEOUT_S)
            if response.status_code != 200:
                raise PoolError(f"HTTP {response.status_code}: {error_detail(response)}")
            return parse_json(response)

        return await self.pool.each(get, PROBE_TIMEOUT_S + 0.5)

    async def info(self) -> list[dict[str, Any]]:
        return [
            {"name": h.name, "url": h.url, **({"info": result} if result is not None else {"error": error})}
            for h, result, error in await self._get_each("/info")
        ]

    async def status(self) -> dict[str, Any]:
        view = self.pool.snapshot()
        remote = {h.name: (result, error) for h, result, error in await self._get_each("/status")}
        for row in view["hosts"]:
            result, error = remote[row["name"]]
            row["service"] = result if result is not None else {"error": error}
            if result is not None:
                self.pool.host(row["name"]).note_status(result)
        return view
