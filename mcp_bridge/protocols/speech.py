"""Speech to text through a host: the request the bridge holds (the audio's bytes and OpenAI's options)
and the check every host type's answer passes before it is merged or returned.

Every host is asked for `verbose_json` (segments with times), whatever the caller asked: the bridge
merges the parts of a split recording by time and renders the caller's format itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gpu_protocol.transcribe import TRANSCRIPTIONS, TRANSLATIONS, TranscriptionOptions, VerboseTranscription
from mcp_bridge.protocols.answers import BadResponse

SpeechTask = Literal["transcribe", "translate"]
TIME_SLACK_S = 1.0
"""How far past the audio's end a host's times may reach (rounding, padding) before the answer is refused."""


@dataclass(frozen=True)
class AudioRequest:
    """One audio file (or one part of a split recording) to transcribe or translate."""

    audio: bytes
    filename: str
    options: TranscriptionOptions
    task: SpeechTask = "transcribe"
    seconds: float | None = None
    """The audio's length when the bridge knows it (a part it cut), for checking the answer's times."""

    @property
    def path(self) -> str:
        return TRANSLATIONS if self.task == "translate" else TRANSCRIPTIONS

    @property
    def words(self) -> bool:
        return "word" in self.options.timestamp_granularities


def check_transcription(answer: VerboseTranscription, request: AudioRequest) -> VerboseTranscription:
    """Times finite, not negative, in order within each segment and word, and not past the audio's end."""
    limit = max(answer.duration, request.seconds or 0.0) + TIME_SLACK_S
    if not (math.isfinite(answer.duration) and answer.duration >= 0):
        raise BadResponse(f"duration {answer.duration} is not a length of time")
    spans = [(s.start, s.end) for s in answer.segments] + [(w.start, w.end) for w in answer.words or []]
    for start, end in spans:
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end + 0.01 and end <= limit):
            raise BadResponse(f"a segment from {start} to {end} s in audio of {answer.duration} s")
    return answer
