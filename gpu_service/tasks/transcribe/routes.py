"""`POST /v1/audio/transcriptions` and `POST /v1/audio/translations`, in OpenAI's shape.

The audio comes as multipart/form-data (OpenAI's clients) or as a JSON body (see
`gpu_protocol.transcribe`); both are checked into the same `TranscriptionOptions`. The work runs
like every other request: cancelled on disconnect or `POST /cancel/{X-Request-Id}`, a job in
`/status` (done/total in seconds of audio), its time in the endpoint's metrics.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from gpu_protocol.audio import OVERHEAD_BYTES, form_options, unknown_fields_message, unknown_form_fields
from gpu_protocol.transcribe import (
    TRANSCRIPTIONS,
    TRANSLATIONS,
    TranscriptionJSONRequest,
    TranscriptionOptions,
    VerboseTranscription,
)
from gpu_service.errors import BadRequest, ServiceError, TooLarge, Unprocessable, invalid_request
from gpu_service.http.serve import ERRORS, ready_service, serve
from gpu_service.settings import Settings, SpeechLimits
from gpu_service.tasks.transcribe.formats import render
from gpu_service.tasks.transcribe.service import Speech

router = APIRouter()

class UnsupportedMediaType(ServiceError):
    status_code = 415


def body_limits(settings: Settings) -> dict[str, tuple[int, str]]:
    """The largest request body of each audio path (base64 in JSON is 4/3 of the file), for the
    body-size middleware, with the variable that sets it."""
    largest = settings.speech.max_audio_bytes * 4 // 3 + OVERHEAD_BYTES
    return {TRANSCRIPTIONS: (largest, "GPU_MAX_AUDIO_BYTES"), TRANSLATIONS: (largest, "GPU_MAX_AUDIO_BYTES")}


def _validated(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _too_large(size: int, limits: SpeechLimits) -> TooLarge:
    return TooLarge(f"file is {size} bytes, over this service's limit of {limits.max_audio_bytes} bytes "
                    "(GPU_MAX_AUDIO_BYTES); split or compress the audio")


async def _from_json(request: Request, limits: SpeechLimits) -> tuple[bytes, str, TranscriptionOptions]:
    try:
        raw = await request.json()
    except ValueError:
        raise BadRequest('request body is not valid JSON; send {"audio": "<base64>", "model": ...}') from None
    body: TranscriptionJSONRequest = _validated(TranscriptionJSONRequest, raw)
    if len(body.audio) * 3 // 4 > limits.max_audio_bytes + 3:
        raise _too_large(len(body.audio) * 3 // 4, limits)
    try:
        data = base64.b64decode(body.audio, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("audio is not valid base64 (standard alphabet, with padding)") from None
    options = TranscriptionOptions.model_validate(body.model_dump(exclude={"audio", "filename"}))
    return data, body.filename or "audio", options


async def _from_form(request: Request, limits: SpeechLimits) -> tuple[bytes, str, TranscriptionOptions]:
    form = await request.form(max_files=1, max_fields=32)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Unprocessable("file: required; send the audio as the multipart field `file`", param="file")
    unknown = unknown_form_fields(form)
    if unknown:
        raise Unprocessable(unknown_fields_message(unknown), param=unknown[0])
    data = await upload.read(limits.max_audio_bytes + 1)
    if len(data) > limits.max_audio_bytes:
        raise _too_large(len(data), limits)
    return data, upload.filename or "audio", _validated(TranscriptionOptions, form_options(form))


async def _read(request: Request, limits: SpeechLimits) -> tuple[bytes, str, TranscriptionOptions]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        return await _from_json(request, limits)
    if media == "multipart/form-data":
        return await _from_form(request, limits)
    raise UnsupportedMediaType(f"Content-Type {media or '(none)'!r} is not accepted; send multipart/form-data "
                               "with a `file` field, or application/json with base64 `audio`")


async def _answer(request: Request, task: str) -> Response:
    speech = ready_service(request).service_of("transcribe", Speech)
    data, filename, options = await _read(request, speech.limits)  # before `serve` listens for a disconnect
    words = "word" in options.timestamp_granularities
    return await serve(request, lambda state: speech.transcribe(data, filename, options, task),
                       lambda result: render(result, options.response_format, words))


_DOC = {"responses": {**ERRORS, 200: {"model": VerboseTranscription}, 415: ERRORS[422]}}


@router.post(TRANSCRIPTIONS, **_DOC)  # type: ignore[arg-type]
async def transcriptions(request: Request) -> Response:
    """Speech to text in the audio's language (OpenAI's `audio.transcriptions`)."""
    return await _answer(request, "transcribe")


@router.post(TRANSLATIONS, **_DOC)  # type: ignore[arg-type]
async def translations(request: Request) -> Response:
    """Speech in any language to English text (OpenAI's `audio.translations`)."""
    return await _answer(request, "translate")
