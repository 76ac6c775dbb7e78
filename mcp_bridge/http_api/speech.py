"""OpenAI's `POST /v1/audio/speech` on the bridge: the request checked by the wire's own `SpeechRequest` (the
service's rule, so a bad request gets the same 4xx naming what is allowed, in OpenAI's error shape), then its
audio streamed as the pool speaks it, part by part in order (mcp_bridge/client/speech_synthesis.py); and
`GET /v1/audio/voices`, the voices the pool speaks (`voices_answer`).

The answer's status waits for the first part: a request no host can speak fails with the status an OpenAI
client acts on (503, 504, 429), never with a 200 and no audio. After that the audio goes out as each part is
done; a part that fails on every host ends the stream without its last chunk (the client sees a broken
transfer, not a short file). `stream_format: "sse"` sends the same pieces as `speech.audio.delta` events,
then `speech.audio.done`. A client that leaves cancels the parts still being spoken, on the hosts too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gpu_protocol.speech_synthesis import (
    CONTENT_TYPES,
    OPENAI_VOICES,
    SPEECH,
    SSE_CONTENT_TYPE,
    SpeechRequest,
    sse_delta,
    sse_done,
)
from mcp_bridge.client.speech_synthesis import FormatUnavailable, SpeechStream
from mcp_bridge.client.views import InfoRow
from mcp_bridge.config import HostConfig
from mcp_bridge.http_api.errors import ApiError, pooled
from mcp_bridge.http_api.requests import json_object, validated

log = logging.getLogger(__name__)

SPEECH_EXAMPLE = '{"model": "tts-1", "input": "text", "voice": "alloy"}'
Admit = Callable[[SpeechRequest], AbstractContextManager[str | None]]
"""The caller's scope and quota for one speech request (http_api/admission.py): inside, the call is counted in
flight; it yields the model the call runs."""


class Speaks(Protocol):
    """The part of the bridge this route uses (`GpuClient`)."""

    async def speech(self, request: SpeechRequest) -> SpeechStream: ...


async def _first(chunks: AsyncIterator[bytes]) -> bytes:
    return await anext(chunks, b"")


async def _rest(first: bytes, chunks: AsyncIterator[bytes], stream: SpeechStream, sse: bool) -> AsyncIterator[bytes]:
    """The audio (or its events) from the first piece on; logs what was spoken when it ends."""
    pieces = 1
    try:
        yield sse_delta(first) if sse else first
        async for piece in chunks:
            pieces += 1
            yield sse_delta(piece) if sse else piece
        if sse:
            yield sse_done(len(stream.request.input))
    except Exception as exc:
        log.warning("POST %s: stopped after %d of %d parts: %s", SPEECH, len(stream.hosts), len(stream.plan.parts),
                    exc)
        raise
    log.info("POST %s: %d characters in %d part(s), %s, on %s in %.2fs", SPEECH, len(stream.request.input),
             len(stream.plan.parts), stream.plan.response_format, ", ".join(sorted(set(stream.hosts))),
             time.perf_counter() - stream.started)


async def speech_answer(request: Request, gpu: Speaks, admit: Admit) -> Response:
    """The answer to `POST /v1/audio/speech` (module docstring). The caller's admission is held until the
    last piece is sent (a stream counts in flight while it plays out)."""
    asked = validated(SpeechRequest, await json_object(request, SPEECH_EXAMPLE))
    held = ExitStack()
    try:
        model = held.enter_context(admit(asked))
        if model != asked.model:
            asked = asked.model_copy(update={"model": model})
        try:
            stream = await gpu.speech(asked)
        except FormatUnavailable as exc:
            raise ApiError(422, str(exc), param="response_format", code="format_unavailable") from None
        chunks = stream.chunks()
        first = await pooled(request, _first(chunks))
    except BaseException:
        held.close()
        raise
    sse = asked.stream_format == "sse"
    media_type = SSE_CONTENT_TYPE if sse else CONTENT_TYPES[asked.response_format]
    headers = {"x-model": stream.model} if stream.model else None
    return StreamingResponse(_held(_rest(first, chunks, stream, sse), held), media_type=media_type, headers=headers)


async def _held(pieces: AsyncIterator[bytes], held: ExitStack) -> AsyncIterator[bytes]:
    try:
        async for piece in pieces:
            yield piece
    finally:
        held.close()


def voices_answer(rows: list[InfoRow], hosts: list[HostConfig]) -> dict[str, object]:
    """`GET /v1/audio/voices` on the bridge: `voices`, what a request's `voice` may name (each speaking
    gpu-service host's default voice, by its own name, the speakers of its voice models that have several,
    then OpenAI's names, which every host speaks), and
    `models`, each voice model the pool speaks with the hosts that have it (a host's default and loaded voices
    from its /info; an `openai` host with `speak: true`, its configured `model` or `tts-1`)."""
    voices: list[str] = []
    models: dict[str, list[str]] = {}
    for row in rows:
        speak = (row.info.capabilities or {}).get("speak") if row.info else None
        if speak is None:
            continue
        if speak.default:
            voices.append(speak.default)
        for name in speak.held():
            models.setdefault(name, []).append(row.name)
            voices.extend(speak.speakers.get(name, ()))
    for host in hosts:
        if host.speak:
            models.setdefault(host.model or "tts-1", []).append(host.label)
    return {"voices": list(dict.fromkeys([*voices, *OPENAI_VOICES])),
            "models": [{"model": name, "hosts": names} for name, names in models.items()]}
