"""Text to speech through a host: the request every host type is sent (OpenAI's `POST /v1/audio/speech`,
`gpu_protocol.speech_synthesis.SpeechRequest`) and the check its answer passes before the bridge joins it
to the other parts of a long input.

The bridge asks a host for one part of the input at a time, whole (never `stream_format: "sse"`): as
raw `pcm` (s16le mono at `PCM_RATE`) when it encodes the joined audio itself, else in the caller's format
(mcp_bridge/client/speech_synthesis.py says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from gpu_protocol.speech_synthesis import SpeechRequest
from mcp_bridge.protocols.answers import BadResponse

MODEL_HEADER = "x-model"
"""The voice model that spoke, as our service names it in its answer's headers."""
OPENAI_FIELDS = ("input", "voice", "instructions", "response_format", "speed")
"""What an OpenAI-compatible speech server (speaches, Kokoro-FastAPI) is sent besides `model`."""


@dataclass(frozen=True)
class SpokenAudio:
    """One host's audio for one part of the input."""

    audio: bytes
    response_format: str
    model: str | None
    """The voice model that spoke (our service says which); None when the host did not say."""


def service_body(request: SpeechRequest) -> dict[str, Any]:
    """Our service's body: the request as it is, answered whole (a stream of one part is no faster here)."""
    return request.model_copy(update={"stream_format": "audio"}).model_dump(exclude_none=True)


def openai_body(request: SpeechRequest, model: str) -> dict[str, Any]:
    """An OpenAI-compatible server's body: OpenAI's own fields only (some servers refuse others)."""
    body = request.model_dump(include=set(OPENAI_FIELDS), exclude_none=True)
    return {"model": model, **body}


def check_speech(response: httpx.Response, request: SpeechRequest) -> SpokenAudio:
    """Audio, not an error page: not JSON or HTML, not empty, and whole 16-bit samples for `pcm`."""
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media.startswith(("application/json", "text/")):
        raise BadResponse(f"answered {media}, not audio")
    audio = response.content
    if not audio:
        raise BadResponse("answered no audio")
    if request.response_format == "pcm" and len(audio) % 2:
        raise BadResponse(f"{len(audio)} bytes of pcm: not whole 16-bit samples")
    return SpokenAudio(audio, request.response_format, response.headers.get(MODEL_HEADER))
