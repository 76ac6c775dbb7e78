"""`POST /v1/audio/speech` (OpenAI's shape) and `GET /v1/audio/voices`.

A request is checked (`SpeechRequest`, strictly) and its voice found before any audio goes out, so a bad
request is a 4xx naming what is allowed. `stream_format: "audio"` answers a chunked body whose first bytes
follow the first sentence; `"sse"` answers `speech.audio.delta` events, then `speech.audio.done`. Both go through `serve_stream`: the
caller's class (`X-GPU-Priority`, else by length), timing headers up to the first audio, and an end at
the next sentence when the client leaves or `POST /cancel/{X-Request-Id}` names it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from gpu_protocol.speech_synthesis import (
    CONTENT_TYPES,
    SPEECH,
    SSE_CONTENT_TYPE,
    VOICES,
    SpeechRequest,
    sse_delta,
    sse_done,
)
from gpu_service.errors import BadRequest, invalid_request
from gpu_service.http.serve import ERRORS, ready_service, serve_stream
from gpu_service.tasks.speak.service import Speak

router = APIRouter()


async def _body(request: Request) -> SpeechRequest:
    try:
        raw: Any = await request.json()
    except ValueError:
        raise BadRequest('request body is not valid JSON; send {"model": ..., "input": ..., "voice": ...}') from None
    try:
        return SpeechRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from None


async def _events(pieces: AsyncIterator[bytes], input_chars: int) -> AsyncIterator[bytes]:
    async for piece in pieces:
        yield sse_delta(piece)
    yield sse_done(input_chars)


@router.post(SPEECH, responses={**ERRORS, 200: {"content": {t: {} for t in CONTENT_TYPES.values()}}})  # type: ignore[dict-item]
async def speech(request: Request) -> Response:
    """Text to speech (OpenAI's `audio.speech`): audio in `response_format`, whole, streamed, or as events."""
    speak = ready_service(request).service_of("speak", Speak)
    body = await _body(request)
    voice = await speak.voice(body)  # 4xx here, before the first byte

    def answer(pieces: AsyncIterator[bytes]) -> Response:
        if body.stream_format == "sse":
            return StreamingResponse(_events(pieces, len(body.input)), media_type=SSE_CONTENT_TYPE)
        return StreamingResponse(pieces, media_type=CONTENT_TYPES[body.response_format],
                                 headers={"x-model": voice.key.label})

    return await serve_stream(request, lambda state: speak.stream(body, voice, request.is_disconnected), answer)


@router.get(VOICES, responses=ERRORS)  # type: ignore[arg-type]
async def voices(request: Request, model: str | None = None) -> JSONResponse:
    """The voices a speech request may name (the model's own, then OpenAI's, which mean its first)."""
    speak = ready_service(request).service_of("speak", Speak)
    voice = await speak.voices(model)
    return JSONResponse({"model": voice.key.label, "voices": list(voice.voices)})
