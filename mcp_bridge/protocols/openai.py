"""OpenAI-compatible hosts (`openai`): `POST /v1/embeddings` (Infinity, vLLM, and our own service speak it),
liveness from `GET /v1/models`; similarity is computed in the bridge. Configured `rerank: true`, also
Cohere's `POST /v1/rerank` (Infinity, vLLM, Jina serve it); configured `transcribe: true`, also OpenAI's
multipart `POST /v1/audio/transcriptions` and `/translations` (speaches, vLLM's Whisper endpoint)."""

from __future__ import annotations

from dataclasses import replace

import httpx
from pydantic import BaseModel, Field

from gpu_protocol import routes
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.rerank import RerankRequest, RerankResponse, RerankResult, RerankUsage
from gpu_protocol.transcribe import TranscriptionSegment, TranscriptionWord, VerboseTranscription
from mcp_bridge.protocols.answers import check_rerank, read_model
from mcp_bridge.protocols.base import HttpCall
from mcp_bridge.protocols.embeddings_only import EmbeddingsOnly
from mcp_bridge.protocols.speech import AudioRequest, check_transcription
from mcp_bridge.protocols.vectors import VectorBlock


class _Embedding(BaseModel):  # lenient: servers add fields of their own (id, created, object, ...)
    index: int
    embedding: list[float]


class _Usage(BaseModel):
    prompt_tokens: int = 0


class _Answer(BaseModel):
    data: list[_Embedding]
    model: str | None = None
    usage: _Usage | None = None


class _Scored(BaseModel):  # lenient, as above: Cohere, Jina, Infinity and vLLM differ in extras
    index: int
    relevance_score: float


class _RerankUsage(BaseModel):
    total_tokens: int = 0


class _Ranking(BaseModel):
    results: list[_Scored]
    model: str | None = None
    usage: _RerankUsage | None = None


class _Verbose(BaseModel):  # lenient: speech servers leave out what OpenAI's verbose_json has and add their own
    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[TranscriptionSegment] = Field(default_factory=list)
    words: list[TranscriptionWord] | None = None


class OpenAIProtocol(EmbeddingsOnly):
    type = "openai"

    def health_call(self) -> HttpCall:
        return HttpCall("GET", routes.OPENAI_MODELS)

    def embed_call(self, request: EmbedRequest) -> HttpCall:
        body = {"input": list(request.texts), "model": self.model_for(request), "encoding_format": "float"}
        return HttpCall("POST", routes.OPENAI_EMBEDDINGS, body)

    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        answer = read_model(response, _Answer)
        rows = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        block = self.checked_block(rows, request, answer.model or self.model_for(request))
        return replace(block, tokens=answer.usage.prompt_tokens) if answer.usage else block

    def rerank_call(self, request: RerankRequest) -> HttpCall:
        texts = request.texts()
        body = {"model": self.config.model or request.model or "default", "query": request.query,
                "documents": texts, "top_n": len(texts), "return_documents": False}
        return HttpCall("POST", routes.RERANK, body)

    def parse_rerank(self, response: httpx.Response, request: RerankRequest) -> RerankResponse:
        answer = read_model(response, _Ranking)
        results = [RerankResult(index=r.index, relevance_score=r.relevance_score) for r in answer.results]
        tokens = answer.usage.total_tokens if answer.usage else 0
        model = answer.model or self.config.model or request.model or "default"
        return check_rerank(RerankResponse(results=results, model=model, usage=RerankUsage(total_tokens=tokens),
                                           truncated=0), request)

    def transcribe_call(self, request: AudioRequest) -> HttpCall:
        o = request.options
        fields: dict[str, str | list[str]] = {
            "model": self.config.model or o.model or "whisper-1", "response_format": "verbose_json",
            "temperature": str(o.temperature), "timestamp_granularities[]": list(o.timestamp_granularities),
        }
        fields.update({name: value for name, value in (("language", o.language), ("prompt", o.prompt)) if value})
        return HttpCall("POST", request.path, files={"file": (request.filename, request.audio)}, data=fields)

    def parse_transcription(self, response: httpx.Response, request: AudioRequest) -> VerboseTranscription:
        answer = read_model(response, _Verbose)
        ends = [s.end for s in answer.segments]
        duration = answer.duration if answer.duration is not None else (request.seconds or max(ends, default=0.0))
        language = answer.language or request.options.language or ""
        verbose = VerboseTranscription(
            task=request.task, language=language, duration=duration, text=answer.text,
            model=self.config.model or request.options.model, segments=answer.segments, words=answer.words,
        )
        return check_transcription(verbose, request)
