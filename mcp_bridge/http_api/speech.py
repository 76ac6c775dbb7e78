"""OpenAI's `POST /v1/audio/speech` on the bridge: the request checked by the wire's own `SpeechRequest` (the
service's rule, so a bad request gets the same 4xx naming what is allowed, in OpenAI's error shape), then its
audio streamed as the pool speaks it, part by part in order (mcp_bridge/client/speech_synthesis.py).

The answer's status waits for the first part: a request no host can speak fails with the status an OpenAI
client acts on (503, 504, 429), never with a 200 and no audio. After that the audio goes out as each part is
done; a part that fails on every host ends the stream without its last chunk (the client sees a broken
transfer, not a short file). `stream_format: "sse"` sends the same pieces as `speech.audio.delta` events,
then `speech.audio.done`. A client that leaves cancels the parts still being spoken, on the hosts too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gpu_protocol.speech_synthesis import (
    CONTENT_TYPES,
    SPEECH,
    SSE_CONTENT_TYPE,
    SpeechRequest,
    sse_delta,
    sse_done,
)
from mcp_bridge.client.speech_synthesis import FormatUnavailable, SpeechStream
from mcp_bridge.http_api.errors import ApiError, pooled
from mcp_bridge.http_api.requests import json_object, validated

log = logging.getLogger(__name__)

SPEECH_EXAMPLE = '{"model": "tts-1", "input": "text", "voice": "alloy"}'


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


async def speech_answer(request: Request, gpu: Speaks) -> Response:
    """The answer to `POST /v1/audio/speech` (module docstring)."""
    asked = validated(SpeechRequest, await json_object(request, SPEECH_EXAMPLE))
    try:
        stream = await gpu.speech(asked)
    except FormatUnavailable as exc:
        raise ApiError(422, str(exc), param="response_format", code="format_unavailable") from None
    chunks = stream.chunks()
    first = await pooled(request, _first(chunks))
    sse = asked.stream_format == "sse"
    media_type = SSE_CONTENT_TYPE if sse else CONTENT_TYPES[asked.response_format]
    headers = {"x-model": stream.model} if stream.model else None
    return StreamingResponse(_rest(first, chunks, stream, sse), media_type=media_type, headers=headers)
