"""Speech to text on the wire: OpenAI's `/v1/audio/transcriptions` and `/v1/audio/translations`.

Two ways to send the audio to the same path:

- multipart/form-data, as OpenAI's clients do: `file` (the audio), `model`, `language`, `prompt`,
  `response_format`, `temperature`, `timestamp_granularities[]`;
- `Content-Type: application/json` with `TranscriptionJSONRequest`, for callers that cannot send
  multipart (the bridge): `{"audio": "<base64 of the file's bytes>", "filename": "note.ogg",
  "model": "tiny.en", "response_format": "verbose_json", "timestamp_granularities": ["word"]}`.
  The other fields are the multipart fields under the same names.

Requests the service receives are strict (unknown fields are an error); answers tolerate fields
they do not know (a newer service may add some), so an older reader keeps parsing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpu_protocol.base import ModelName, StrictModel
from gpu_protocol.subtitles import srt, vtt

TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"

DEFAULT_MAX_AUDIO_BYTES = 25 * 1024 * 1024
"""The largest audio file (OpenAI's limit too); more gets 413. `GPU_MAX_AUDIO_BYTES` on the service."""
DEFAULT_MAX_AUDIO_SECONDS = 3 * 3600.0
"""The longest audio after decoding; more gets 413. `GPU_MAX_AUDIO_SECONDS` on the service."""
MAX_PROMPT_CHARS = 2000
OPENAI_MODEL_ALIASES = frozenset({"whisper-1"})
"""OpenAI's model names its clients send without a choice: they mean the default model (the service's
MODEL_TRANSCRIBE; through the bridge, whatever model each host serves by default)."""

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")
Granularity = Literal["segment", "word"]
GRANULARITIES: tuple[str, ...] = ("segment", "word")


def _segments_only() -> list[Granularity]:
    return ["segment"]


class TranscriptionOptions(StrictModel):
    """Everything but the audio: the multipart form fields, checked by the same rules."""

    model: ModelName | None = Field(
        default=None, description="A faster-whisper model; `whisper-1` or none: the service's MODEL_TRANSCRIBE."
    )
    language: str | None = Field(default=None, min_length=2, max_length=16, description="ISO-639-1 code, e.g. `en`.")
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    response_format: ResponseFormat = "json"
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(default_factory=_segments_only, max_length=2)

    @field_validator("model")
    @classmethod
    def _default_for_openai_names(cls, model: str | None) -> str | None:
        return None if model in OPENAI_MODEL_ALIASES else model


class TranscriptionJSONRequest(TranscriptionOptions):
    audio: str = Field(min_length=1, description="The audio file's bytes, base64 (standard alphabet).")
    filename: str | None = Field(default=None, max_length=255, description="Only for messages.")


class Answer(BaseModel):
    """What the service sends: a reader ignores fields it does not know."""

    model_config = ConfigDict(extra="ignore")


class TranscriptionWord(Answer):
    word: str
    start: float
    end: float
    probability: float | None = None


class TranscriptionSegment(Answer):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class Transcription(Answer):
    """`response_format=json`."""

    text: str


class VerboseTranscription(Answer):
    """`response_format=verbose_json`: times in seconds from the start of the file."""

    task: Literal["transcribe", "translate"] = "transcribe"
    language: str
    duration: float
    text: str
    model: str | None = None
    segments: list[TranscriptionSegment] = Field(default_factory=list)
    words: list[TranscriptionWord] | None = None


def rendered(transcript: VerboseTranscription, response_format: str) -> tuple[str | Mapping[str, Any], str]:
    """The answer's body in `response_format` and its media type: text, srt and vtt as text, verbose_json
    the whole transcript, json (the default) the text alone."""
    if response_format == "text":
        return transcript.text + "\n", "text/plain"
    if response_format == "srt":
        return srt(transcript.segments), "text/plain"
    if response_format == "vtt":
        return vtt(transcript.segments), "text/vtt"
    if response_format == "verbose_json":
        return transcript.model_dump(mode="json", exclude_none=True), "application/json"
    return {"text": transcript.text}, "application/json"
