"""OpenAI's `/v1/audio/transcriptions` and `/v1/audio/translations` on the bridge: the multipart request read
within the bridge's audio limit and checked by the wire's own options model, and the pool's transcript
rendered in the format the caller asked; the form's rules (gpu_protocol.audio) and the rendering
(gpu_protocol.transcribe.rendered) are the service's own.

`model` left out or `whisper-1` (what OpenAI's clients send by habit) is the pool's default model.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from gpu_protocol.audio import OVERHEAD_BYTES, form_options, unknown_fields_message, unknown_form_fields
from gpu_protocol.transcribe import TranscriptionOptions, VerboseTranscription, rendered
from mcp_bridge.config import AudioConfig
from mcp_bridge.http_api.errors import ApiError
from mcp_bridge.http_api.requests import validated
from mcp_bridge.protocols.speech import AudioRequest, SpeechTask


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
    unknown = unknown_form_fields(form)
    if unknown:
        raise ApiError(422, unknown_fields_message(unknown), param=unknown[0])
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _too_large(len(data), limit)
    if not data:
        raise ApiError(422, "file: empty; send the audio file's bytes", param="file")
    options = validated(TranscriptionOptions, form_options(form))
    return AudioRequest(data, upload.filename or "audio", options, task)


def render(transcript: VerboseTranscription, options: TranscriptionOptions) -> Response:
    """The transcript in `options.response_format`, as OpenAI answers it."""
    body, media_type = rendered(transcript, options.response_format)
    return PlainTextResponse(body, media_type=media_type) if isinstance(body, str) else JSONResponse(body)
