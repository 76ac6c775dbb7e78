"""OpenAI's `/v1/audio/transcriptions` and `/v1/audio/translations` on the bridge: the multipart request read
within the bridge's audio limit and checked by the wire's own options model, and the pool's transcript
rendered in the format the caller asked (srt and vtt from gpu_protocol.subtitles, the service's own rules).

`model` left out or `whisper-1` (what OpenAI's clients send by habit) is the pool's default model.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from gpu_protocol.subtitles import srt, vtt
from gpu_protocol.transcribe import TranscriptionOptions, VerboseTranscription
from mcp_bridge.config import AudioConfig
from mcp_bridge.http_api.errors import ApiError
from mcp_bridge.http_api.requests import validated
from mcp_bridge.protocols.speech import AudioRequest, SpeechTask

FORM_FIELDS = ("model", "language", "prompt", "response_format", "temperature")
GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
OVERHEAD_BYTES = 256 * 1024


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"the file is {size} bytes, over this bridge's limit of {limit} bytes (audio.maxMB); "
                         "split or compress the audio", param="file")


async def audio_request(request: Request, audio: AudioConfig, task: SpeechTask) -> AudioRequest:
    """The multipart upload as the pool's request, or an ApiError naming the field."""
    limit = int(audio.maxMB * 1024 * 1024)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise ApiError(415, f"Content-Type {media or '(none)'!r} is not accepted; send multipart/form-data with "
                            "the audio as the field `file` (as OpenAI's clients do)")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + OVERHEAD_BYTES:
        raise _too_large(int(length), limit)
    try:
        form = await request.form(max_files=1, max_fields=32)
    except Exception as exc:  # noqa: BLE001 - the parser's own words for a broken upload
        raise ApiError(400, f"the multipart body cannot be read: {str(exc)[:200]}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "file: required; send the audio as the multipart field `file`", param="file")
    unknown = sorted(set(form.keys()) - {"file", *FORM_FIELDS, *GRANULARITY_FIELDS})
    if unknown:
        raise ApiError(422, f"unknown form field(s) {', '.join(unknown)}; allowed: file, {', '.join(FORM_FIELDS)}, "
                            "timestamp_granularities[]", param=unknown[0])
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _too_large(len(data), limit)
    if not data:
        raise ApiError(422, "file: empty; send the audio file's bytes", param="file")
    fields: dict[str, Any] = {name: value for name in FORM_FIELDS
                              if isinstance(value := form.get(name), str) and value.strip()}
    granularities = [g for name in GRANULARITY_FIELDS for g in form.getlist(name) if isinstance(g, str)]
    if granularities:
        fields["timestamp_granularities"] = granularities
    options = validated(TranscriptionOptions, fields)
    return AudioRequest(data, upload.filename or "audio", options, task)


def render(transcript: VerboseTranscription, options: TranscriptionOptions) -> Response:
    """The transcript in `options.response_format`, as OpenAI answers it."""
    fmt = options.response_format
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(srt(transcript.segments))
    if fmt == "vtt":
        return PlainTextResponse(vtt(transcript.segments), media_type="text/vtt")
    if fmt == "verbose_json":
        return JSONResponse(transcript.model_dump(mode="json", exclude_none=True))
    return JSONResponse({"text": transcript.text})
