"""The speech rules both sides keep, written once: the sample rate the decoders produce, how a multipart
upload's fields are read (and an unknown one refused), and the room a request needs above its audio (how
a transcript is rendered in each response format: `gpu_protocol.transcribe.rendered`). Standard library only,
so a decoder process can read `RATE` without loading pydantic."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

RATE = 16_000
"""Samples per second of decoded audio (mono int16 / float32): what Whisper reads, on both sides."""

FORM_FIELDS = ("model", "language", "prompt", "response_format", "temperature")
"""The multipart fields besides `file` and the granularities (`TranscriptionOptions`' fields)."""
GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
"""The two spellings of the repeated granularity field (OpenAI's clients send the first)."""
OVERHEAD_BYTES = 256 * 1024
"""Room for the form fields (or the JSON around the base64) above the audio itself."""


class Form(Protocol):
    """What both sides' multipart forms offer (Starlette's FormData)."""

    def keys(self) -> Iterable[str]: ...

    def get(self, key: str, /) -> Any: ...

    def getlist(self, key: str, /) -> list[Any]: ...


def unknown_form_fields(form: Form) -> list[str]:
    """The fields of `form` that are not `file` or an option, sorted (a request with any is refused)."""
    return sorted(set(form.keys()) - {"file", *FORM_FIELDS, *GRANULARITY_FIELDS})


def unknown_fields_message(unknown: list[str]) -> str:
    return f"unknown form field(s) {', '.join(unknown)}; allowed: file, {', '.join(FORM_FIELDS)}, timestamp_granularities[]"


def form_options(form: Form) -> dict[str, Any]:
    """The options a multipart form sets, for `TranscriptionOptions`: blank fields left out, the
    granularities gathered from either spelling."""
    fields: dict[str, Any] = {
        name: value for name in FORM_FIELDS if isinstance(value := form.get(name), str) and value.strip()
    }
    granularities = [g for name in GRANULARITY_FIELDS for g in form.getlist(name) if isinstance(g, str)]
    if granularities:
        fields["timestamp_granularities"] = granularities
    return fields
