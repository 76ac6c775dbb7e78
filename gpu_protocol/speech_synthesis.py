"""Text to speech on the wire: OpenAI's `POST /v1/audio/speech`, the rules the bridge and the service share.

A request is `SpeechRequest` (JSON, read strictly: an unknown field is refused with a message naming
the fields there are). The answer is audio in `response_format` (`CONTENT_TYPES` says which type), or,
with `stream_format: "sse"`, server-sent events: `speech.audio.delta` events carrying base64 audio, then
one `speech.audio.done` (`sse_delta`, `sse_done`). `pcm` is raw signed 16-bit little-endian mono at
`PCM_RATE` (what OpenAI sends, and what telephony paths expect).

Long input is spoken sentence by sentence: `split_sentences` cuts it at sentence ends (the first audio
can go out after the first sentence, and a bridge can send sentences to several hosts and join the
audio in order).
"""

from __future__ import annotations

import base64
import json
import re
import struct
from typing import Literal

from pydantic import Field, field_validator

from gpu_protocol.base import ModelName, StrictModel

SPEECH = "/v1/audio/speech"
VOICES = "/v1/audio/voices"

MAX_INPUT_CHARS = 4096
"""OpenAI's limit on `input`; longer input is refused (split it: `split_sentences`)."""
PCM_RATE = 24_000
"""The sample rate of `pcm` (16-bit little-endian mono), whatever the voice's own rate."""
MIN_SPEED, MAX_SPEED = 0.25, 4.0

OPENAI_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)
"""OpenAI's voice names: a host speaks them with its default voice unless its operator maps them."""
OPENAI_MODEL_ALIASES = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
"""OpenAI's model names, which clients send without a choice: they mean the host's default voice model."""

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
RESPONSE_FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
StreamFormat = Literal["audio", "sse"]
STREAM_FORMATS: tuple[str, ...] = ("audio", "sse")

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Opus in an Ogg container (what voice notes are)
    "aac": "audio/aac",  # ADTS frames
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",  # raw s16le mono at PCM_RATE, no header
}
SSE_CONTENT_TYPE = "text/event-stream"

CONTAINERS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"), "flac": ("flac", "flac"),
}
"""response_format -> (the container, the codec) that make it: what PyAV (FFmpeg) calls them."""
OPUS_RATE = 48_000
OPUS_PAGE_MS = 60
"""Ogg/Opus pages of at most this long, so a sentence's audio leaves before the next is ready."""
STREAMING_SIZE = 0xFFFFFFFF
"""A streamed WAV's RIFF and data sizes: the length is not known yet."""


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """The RIFF/WAVE header of 16-bit mono PCM with `data_bytes` of samples (None: a stream of unknown length:
    the RIFF and data sizes are then `STREAMING_SIZE`, the convention ffmpeg and browsers read as "until the
    end of the stream"). A WAV made of several sentences, or of several hosts' parts, has one header."""
    data = STREAMING_SIZE if data_bytes is None else data_bytes
    riff = STREAMING_SIZE if data_bytes is None else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data))


class SpeechRequest(StrictModel):
    """The body of `POST /v1/audio/speech` (OpenAI's fields)."""

    model: ModelName | None = Field(
        default=None, description="A voice model; `tts-1`, `tts-1-hd`, `gpt-4o-mini-tts` or none: the host's default.")
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS, description="The text to speak.")
    voice: str = Field(
        min_length=1, max_length=200,
        description=f"One of OpenAI's voices ({', '.join(OPENAI_VOICES)}) or a voice the host lists at {VOICES}.")
    instructions: str | None = Field(
        default=None, max_length=MAX_INPUT_CHARS,
        description="OpenAI's style instructions; accepted so its clients work, ignored by voices without style control.")
    response_format: ResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: StreamFormat = "audio"

    @field_validator("input")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("input is blank: give the text to speak")
        return text

    @field_validator("model")
    @classmethod
    def _default_for_openai_names(cls, model: str | None) -> str | None:
        return None if model in OPENAI_MODEL_ALIASES else model


def sse_delta(audio: bytes) -> bytes:
    """One server-sent event with a piece of the audio (OpenAI's `speech.audio.delta`)."""
    return _event({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")})


def sse_done(input_chars: int) -> bytes:
    """The last server-sent event (OpenAI's `speech.audio.done`); usage counts input characters."""
    return _event({"type": "speech.audio.done", "usage": {"input_tokens": input_chars, "output_tokens": 0,
                                                          "total_tokens": input_chars}})


def _event(data: dict[str, object]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# ---- sentences

_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|\s*\n\s*")
"""Where a sentence ends: a run of . ! ? … (closing quotes or brackets after it) then whitespace, or a line break."""
_CLAUSE_END = re.compile(r"[,;:\u2014]\s+")
"""Where a long sentence may be cut: after a comma, semicolon, colon or dash that space follows."""
_SPACE = re.compile(r"\s+")


def split_sentences(text: str, max_chars: int = 400) -> list[str]:
    """`text` as sentences in order, each at most `max_chars` long, none blank, whitespace at the cuts dropped.

    Cuts at sentence ends; a sentence longer than `max_chars` is cut after commas (semicolons, colons,
    dashes), then between words. Only a single word longer than `max_chars` is cut inside. Nothing else
    is lost: joining the pieces gives `text` back up to whitespace."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    pieces: list[str] = []
    for sentence in _cut_after(text, _SENTENCE_END):
        pieces.extend(_fit(sentence, max_chars))
    return pieces


def _cut_after(text: str, boundary: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `boundary`, stripped, blanks dropped."""
    parts, start = [], 0
    for match in boundary.finditer(text):
        parts.append(text[start:match.end()])
        start = match.end()
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _fit(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = _cut_after(sentence, _CLAUSE_END)
    if len(clauses) > 1:
        return _pack([piece for clause in clauses for piece in _fit_words(clause, max_chars)], max_chars)
    return _fit_words(sentence, max_chars)


def _fit_words(clause: str, max_chars: int) -> list[str]:
    if len(clause) <= max_chars:
        return [clause]
    words = [w[i:i + max_chars] for w in _SPACE.split(clause) if w for i in range(0, len(w), max_chars)]
    return _pack(words, max_chars)


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Consecutive `parts` joined with one space while they fit in `max_chars`."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= max_chars:
            packed[-1] += " " + part
        else:
            packed.append(part)
    return packed
