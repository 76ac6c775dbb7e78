"""A transcript's segments as subtitles (OpenAI's `srt` and `vtt` response formats), one definition for the
service (which renders its own transcripts) and the bridge (which renders transcripts merged from many hosts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Cue(Protocol):
    """A timed piece of a transcript: a segment, from the service's engine or from the wire."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


def clock(seconds: float, separator: str) -> str:
    """`HH:MM:SS<separator>mmm` (srt uses `,`, vtt `.`)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: Sequence[Cue]) -> str:
    cues = [
        f"{i}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def vtt(segments: Sequence[Cue]) -> str:
    cues = [f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)
