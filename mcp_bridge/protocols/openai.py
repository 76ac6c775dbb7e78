"""OpenAI-compatible hosts (`openai`): `POST <base>/embeddings` (Infinity, vLLM, LiteLLM, and our own service speak
it), liveness from `GET <base>/models`; similarity is computed in the bridge. Configured `rerank: true`, also
Cohere's `POST <base>/rerank` (Infinity, vLLM, Jina serve it); configured `transcribe: true`, also OpenAI's
multipart `POST <base>/audio/transcriptions` and `/translations` (speaches, vLLM's Whisper endpoint); configured
`speak: true`, also OpenAI's `POST <base>/audio/speech` (speaches, Kokoro-FastAPI).

`<base>` is the host's URL as an OpenAI client takes it: a URL that ends in `/v1` (`http://vllm:8000/v1`) is
used as it is. A URL without (`http://vllm:8000`) gets `/v1` added, unless the server answers 404 there and
not at the bare path (Infinity's default, no `--url-prefix`): every health check asks `GET /v1/models`, then on
404 `GET /models`, and the paths of the one that answered are used from then on (the first check runs as soon as
the host joins the pool).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from gpu_protocol import routes
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.rerank import RerankRequest, RerankResponse, RerankResult, RerankUsage
from gpu_protocol.speech_synthesis import SPEECH, SpeechRequest
from gpu_protocol.transcribe import (
    TRANSCRIPTIONS,
    TranscriptionSegment,
    TranscriptionWord,
    VerboseTranscription,
)
from mcp_bridge.protocols import exchange as operations
from mcp_bridge.protocols.answers import check_rerank, read_model
from mcp_bridge.protocols.base import HttpCall
from mcp_bridge.protocols.embeddings_only import EmbeddingsOnly
from mcp_bridge.protocols.speech import AudioRequest, check_transcription
from mcp_bridge.protocols.speech_synthesis import check_speech, openai_body
from mcp_bridge.protocols.vectors import VectorBlock

if TYPE_CHECKING:
    from mcp_bridge.config import HostConfig

PREFIX = routes.OPENAI_PREFIX
MODELS, EMBEDDINGS, RERANK = (path.removeprefix(PREFIX) for path in (routes.OPENAI_MODELS,
                                                                     routes.OPENAI_EMBEDDINGS, routes.RERANK))
"""The routes under an OpenAI-compatible base URL: `/models`, `/embeddings`, `/rerank`."""


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

    def __init__(self, config: HostConfig) -> None:
        super().__init__(config)
        self.url_path = urlsplit(config.url).path.rstrip("/")
        self.prefix_in_url = self.url_path.endswith(PREFIX)
        """The URL is a base URL that ends in /v1: its routes are called right under it, never probed."""
        self.prefix = "" if self.prefix_in_url else PREFIX
        """What is put between the URL and a route: `/v1`, or nothing (in the URL, or a server without it)."""
        self.answered: HttpCall | None = None
        """The health probe that last answered (not 404): the spelling in use."""

    @property
    def paths_unknown(self) -> bool:
        """Whether a health check must still find where the server's routes are."""
        return not self.prefix_in_url and self.answered is None

    def health_call(self) -> HttpCall:
        return HttpCall("GET", self.prefix + MODELS)

    def health_calls(self) -> list[HttpCall]:
        """The spelling in use, then (on 404) the other: `/v1/models`, `/models`."""
        if self.prefix_in_url:
            return [self.health_call()]
        other = "" if self.prefix else PREFIX
        return [self.health_call(), HttpCall("GET", other + MODELS)]

    def health_answered(self, call: HttpCall, response: httpx.Response) -> None:
        if response.status_code != 404:
            self.prefix, self.answered = call.path.removesuffix(MODELS), call

    def paths(self) -> str:
        """The paths called on the host (its URL's path included) and the probe that chose them."""
        base = self.url_path + self.prefix
        called = [f"POST {base}{EMBEDDINGS}"] + ([f"POST {base}{RERANK}"] if self.config.rerank else [])
        called += [f"POST {base}{TRANSCRIPTIONS.removeprefix(PREFIX)}"] if self.config.transcribe else []
        called += [f"POST {base}{SPEECH.removeprefix(PREFIX)}"] if self.config.speak else []
        if self.prefix_in_url:
            found = "the URL ends in /v1"
        elif self.answered is not None:
            found = f"GET {self.url_path}{self.answered.path} answered"
        else:
            found = f"not yet found: neither GET {self.url_path}{PREFIX}{MODELS} nor {self.url_path}{MODELS} answered"
        return f"{', '.join(called)} ({found})"

    def exchanges(self) -> operations.Exchanges:
        return (super().exchanges()
                .add(operations.RERANK, self.rerank_call, self.parse_rerank)
                .add(operations.TRANSCRIBE, self.transcribe_call, self.parse_transcription)
                .add(operations.SPEAK, self.speak_call, check_speech))

    def embed_call(self, request: EmbedRequest) -> HttpCall:
        body = {"input": list(request.texts), "model": self.model_name(request.model), "encoding_format": "float"}
        return HttpCall("POST", self.prefix + EMBEDDINGS, body)

    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        answer = read_model(response, _Answer)
        rows = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        block = self.checked_block(rows, request, answer.model or self.model_name(request.model))
        return replace(block, tokens=answer.usage.prompt_tokens) if answer.usage else block

    def rerank_call(self, request: RerankRequest) -> HttpCall:
        texts = request.texts()
        body = {"model": self.model_name(request.model), "query": request.query,
                "documents": texts, "top_n": len(texts), "return_documents": False}
        return HttpCall("POST", self.prefix + RERANK, body)

    def parse_rerank(self, response: httpx.Response, request: RerankRequest) -> RerankResponse:
        answer = read_model(response, _Ranking)
        results = [RerankResult(index=r.index, relevance_score=r.relevance_score) for r in answer.results]
        tokens = answer.usage.total_tokens if answer.usage else 0
        model = answer.model or self.model_name(request.model)
        return check_rerank(RerankResponse(results=results, model=model, usage=RerankUsage(total_tokens=tokens),
                                           truncated=0), request)

    def transcribe_call(self, request: AudioRequest) -> HttpCall:
        o = request.options
        fields: dict[str, str | list[str]] = {
            "model": self.model_name(o.model, "whisper-1"), "response_format": "verbose_json",
            "temperature": str(o.temperature), "timestamp_granularities[]": list(o.timestamp_granularities),
        }
        fields.update({name: value for name, value in (("language", o.language), ("prompt", o.prompt)) if value})
        path = self.prefix + request.path.removeprefix(PREFIX)  # under the base URL, like the other routes
        return HttpCall("POST", path, files={"file": (request.filename, request.audio)}, data=fields)

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

    def speak_call(self, request: SpeechRequest) -> HttpCall:
        body = openai_body(request, self.model_name(request.model, "tts-1"))
        return HttpCall("POST", self.prefix + SPEECH.removeprefix(PREFIX), body)
