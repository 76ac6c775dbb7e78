"""The pool behind OpenAI's embeddings API (`POST /v1/embeddings`, `GET /v1/models`), Cohere's
rerank API (`POST /v1/rerank`, and v2's `POST /v2/rerank`, http_api/cohere.py) and OpenAI's speech to
text (`POST /v1/audio/transcriptions` and `/translations`, read and rendered in http_api/audio.py) and
text to speech (`POST /v1/audio/speech`, streamed as the pool speaks it, and `GET /v1/audio/voices`:
http_api/speech.py).

In HTTP mode the bridge serves these next to `/mcp`, behind the same bearer token, so any
OpenAI client (OpenClaw's `openai-compatible` memory provider, LangChain, LlamaIndex, the
`openai` package) gets the pool's balancing, failover, sharding and deadlines by pointing
its base URL at the bridge. Errors come in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, with the status an OpenAI client acts on:
401 bad token, 413 too much input, 422 invalid input, 429 + Retry-After when every host is
busy, 503 when no host can serve, 504 past the deadline.

What it needs from the bridge is small on purpose: something with `embed(...)`, `rerank(...)`
and `info()` (the bridge's `GpuClient`), the configuration (limits, secrets to redact, the
models of openai/tei hosts) and the pool's error types.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gpu_protocol import routes
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.rerank import RerankRequest
from gpu_protocol.speech_synthesis import SPEECH, VOICES
from gpu_protocol.transcribe import TRANSCRIPTIONS, TRANSLATIONS
from mcp_bridge.access.gate import Access
from mcp_bridge.client.audio_decode import AudioUnreadable
from mcp_bridge.client.results import EmbedResult, RerankOutcome, TranscribeOutcome
from mcp_bridge.client.views import InfoRow
from mcp_bridge.config import BridgeConfig, redactor
from mcp_bridge.http_api.admission import admitted
from mcp_bridge.http_api.audio import audio_request, render
from mcp_bridge.http_api.caller_headers import caller_from_headers
from mcp_bridge.http_api.cohere import v2_answer, wire_request
from mcp_bridge.http_api.errors import ApiError, pooled
from mcp_bridge.http_api.requests import (
    EMBED_EXAMPLE,
    RERANK_EXAMPLE,
    embedding_request,
    json_object,
    rerank_request,
    rerank_v2_request,
)
from mcp_bridge.http_api.responses import ModelResponse, embeddings_answer
from mcp_bridge.http_api.speech import Speaks, speech_answer, voices_answer
from mcp_bridge.pool.caller import current_caller
from mcp_bridge.protocols.speech import AudioRequest, SpeechTask

log = logging.getLogger(__name__)

PREFIX = "/v1"
PREFIXES = (PREFIX, "/v2")
"""The paths this app serves start with one of these (the rest of the HTTP bridge is MCP's)."""
Handler = Callable[[Request], Awaitable[Response]]


class Embedder(Speaks, Protocol):
    """The part of the bridge this API uses (`GpuClient`)."""

    async def embed_request(self, request: EmbedRequest) -> EmbedResult: ...

    async def rerank(self, request: RerankRequest) -> RerankOutcome: ...

    async def info(self) -> list[InfoRow]: ...

    async def transcribe(self, request: AudioRequest) -> TranscribeOutcome: ...


class V1:
    """The `/v1` routes over `gpu` (the bridge's `GpuClient`)."""

    def __init__(self, gpu: Embedder, config: BridgeConfig, unavailable: str | None, access: Access | None) -> None:
        self.gpu, self.config, self.unavailable, self.access = gpu, config, unavailable, access
        self.redact = redactor(config)  # the same secrets as the MCP tools' errors hide

    def answering(self, handler: Handler) -> Handler:
        """`handler`, with every failure answered in OpenAI's shape (secrets redacted, bugs logged)."""

        async def endpoint(request: Request) -> Response:
            try:
                if self.unavailable:
                    raise ApiError(503, self.unavailable, code="not_configured")
                named = current_caller.set(caller_from_headers(request))
                try:
                    return await handler(request)
                finally:
                    current_caller.reset(named)
            except ApiError as exc:
                exc.message = self.redact(exc.message)
                if exc.status >= 500:
                    log.warning("%s %s: HTTP %d: %s", request.method, request.url.path, exc.status, exc.message)
                return exc.response()
            except Exception:  # a bug here: say so without details, log them
                log.exception("%s %s failed", request.method, request.url.path)
                return ApiError(500, "internal error in the bridge; see its log").response()

        return endpoint

    async def embeddings(self, request: Request) -> Response:
        asked, wire = embedding_request(await json_object(request, EMBED_EXAMPLE), self.config.limits)
        with admitted(request, self.access, "gpu_embed", len(wire.texts), wire.model) as model:
            wire = wire.model_copy(update={"model": model})
            result = await pooled(request, self.gpu.embed_request(wire))
        log.info("POST /v1/embeddings: %d texts%s, model %s, on %s in %.2fs", len(wire.texts),
                 f" ({asked.input_type})" if asked.input_type else "", result.model, ", ".join(result.hosts),
                 result.seconds)
        return ModelResponse(embeddings_answer(result, asked.encoding_format))

    async def rerank(self, request: Request) -> JSONResponse:
        parsed = rerank_request(await json_object(request, RERANK_EXAMPLE), self.config.limits)
        with admitted(request, self.access, "gpu_rerank", len(parsed.documents), parsed.model) as model:
            parsed = parsed.model_copy(update={"model": model})
            outcome = await pooled(request, self.gpu.rerank(parsed))
        log.info("POST /v1/rerank: %d documents, model %s, on %s in %.2fs", len(parsed.documents),
                 outcome.response.model, ", ".join(outcome.hosts), outcome.seconds)
        return JSONResponse(outcome.response.model_dump(mode="json", exclude_none=True))

    async def rerank_v2(self, request: Request) -> JSONResponse:
        asked = rerank_v2_request(await json_object(request, RERANK_EXAMPLE), self.config.limits)
        with admitted(request, self.access, "gpu_rerank", len(asked.documents), asked.model) as model:
            outcome = await pooled(request, self.gpu.rerank(wire_request(asked.model_copy(update={"model": model}))))
        log.info("POST %s: %d documents, model %s, on %s in %.2fs", routes.RERANK_V2, len(asked.documents),
                 outcome.response.model, ", ".join(outcome.hosts), outcome.seconds)
        answer = v2_answer(asked, outcome, request.headers.get(routes.REQUEST_ID_HEADER))
        return JSONResponse(answer.model_dump(mode="json", exclude_none=True))

    async def speech(self, request: Request, task: SpeechTask) -> Response:
        wire = await audio_request(request, self.config.audio, task)

        async def transcribed(audio: AudioRequest) -> TranscribeOutcome:
            try:
                return await self.gpu.transcribe(audio)
            except AudioUnreadable as exc:  # the bridge could not split it: the caller's file, not the pool
                raise ApiError(422, f"file: {exc}", param="file") from None

        with admitted(request, self.access, "gpu_transcribe", 1, wire.options.model) as model:
            options = wire.options.model_copy(update={"model": model})
            outcome = await pooled(request, transcribed(dataclasses.replace(wire, options=options)))
        log.info("POST %s: %d bytes, %.1fs of audio in %d part(s), model %s, on %s in %.2fs", request.url.path,
                 len(wire.audio), outcome.transcription.duration, outcome.parts, outcome.transcription.model,
                 ", ".join(outcome.hosts), outcome.seconds)
        return render(outcome.transcription, wire.options)

    async def speak(self, request: Request) -> Response:
        return await speech_answer(
            request, self.gpu, lambda asked: admitted(request, self.access, "gpu_speak", 1, asked.model))

    async def voices(self, request: Request) -> JSONResponse:
        with admitted(request, self.access, "gpu_speak", 0, None):
            return JSONResponse(voices_answer(await self.gpu.info(), self.config.pool_hosts()))

    async def transcriptions(self, request: Request) -> Response:
        return await self.speech(request, "transcribe")

    async def translations(self, request: Request) -> Response:
        return await self.speech(request, "translate")

    async def models(self, request: Request) -> JSONResponse:
        with admitted(request, self.access, "gpu_info", 0, None):
            found, problems = await list_models(self.gpu, self.config)
        body: dict[str, Any] = {"object": "list", "data": found}
        if problems:  # not OpenAI's, and ignored by its clients: why a host is missing from the list
            body["host_errors"] = [{"host": name, "error": self.redact(error)} for name, error in problems]
        return JSONResponse(body)


def openai_app(gpu: Embedder, config: BridgeConfig, unavailable: str | None = None,
               access: Access | None = None) -> ASGIApp:
    """The ASGI app for `/v1/...`. `unavailable`: why nothing can be served (no hosts configured); `access`: the
    clients' scopes and quotas (behind `http_api.identity.ClientIdentity`), None for none."""
    v1 = V1(gpu, config, unavailable, access)
    return Starlette(routes=[
        Route(f"{PREFIX}/embeddings", v1.answering(v1.embeddings), methods=["POST"]),
        Route(f"{PREFIX}/models", v1.answering(v1.models), methods=["GET"]),
        Route(f"{PREFIX}/rerank", v1.answering(v1.rerank), methods=["POST"]),
        Route(routes.RERANK_V2, v1.answering(v1.rerank_v2), methods=["POST"]),
        Route(TRANSCRIPTIONS, v1.answering(v1.transcriptions), methods=["POST"]),
        Route(TRANSLATIONS, v1.answering(v1.translations), methods=["POST"]),
        Route(SPEECH, v1.answering(v1.speak), methods=["POST"]),
        Route(VOICES, v1.answering(v1.voices), methods=["GET"]),
    ])


async def list_models(gpu: Embedder, config: BridgeConfig) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The embedding models the pool serves: loaded on gpu-service hosts (from their /info, with
    dimensions, maximum input tokens and prompts), configured for openai/tei hosts, and the
    bridge's `models.embed`. `default: true` marks the one used when a request names none.
    Also (host, error) for every gpu-service host whose /info did not answer."""
    found: dict[str, dict[str, Any]] = {}
    problems: list[tuple[str, str]] = []

    def entry(name: str) -> dict[str, Any]:
        return found.setdefault(name, {"id": name, "object": "model", "created": 0, "owned_by": "gpu-bridge",
                                       "hosts": [], "default": False})

    host_defaults: list[str] = []
    for row in await gpu.info():
        if row.info is None:
            if row.described and row.error:
                problems.append((row.name, row.error))
            continue
        host_defaults.append(row.info.default_models.get("embed") or "")
        for model in row.info.models:
            if model.kind != "embed":
                continue
            item = entry(model.name)
            item["hosts"].append(row.name)
            for value, out in ((model.dimensions, "dimensions"), (model.max_tokens, "max_input_tokens"),
                               (model.prompts, "prompts")):
                if value is not None:
                    item[out] = value
    for host in config.pool_hosts():
        if host.model:  # what the bridge asks an openai/tei host for
            entry(host.model)["hosts"].append(host.label)
    default = config.models.embed or next((d for d in host_defaults if d), None)
    if default is None and found:
        default = next(iter(found))
    if default is not None:
        entry(default)["default"] = True
    return list(found.values()), problems
