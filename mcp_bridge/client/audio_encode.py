"""Encoding the joined audio of a speech request on the bridge: the hosts answer each part of a long input
as raw `pcm` (s16le mono at `PCM_RATE`), and one `PcmEncoder` makes one file of them all, fed part by part
in order (one RIFF header for a long WAV, one container for the rest).

wav and pcm need nothing; mp3, opus, aac and flac need PyAV (the bridge's `speech` extra), imported only
when one is asked for. Callers run `encode` and `finish` on a worker thread, never on the event loop.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np

from gpu_protocol.audio_container import ContainerEncoder
from gpu_protocol.speech_synthesis import PCM_RATE, RESPONSE_FORMATS, wav_header

RAW_FORMATS = ("pcm", "wav")
"""What the bridge makes without PyAV."""


def can_encode(response_format: str) -> bool:
    """Whether this bridge can make `response_format` from pcm parts (mp3, opus, aac, flac: PyAV installed)."""
    return response_format in RAW_FORMATS or importlib.util.find_spec("av") is not None


class _Format(Protocol):
    def encode(self, pcm: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class _Raw:
    """pcm as it is; wav behind one header (its real length when known, else the streaming sizes)."""

    def __init__(self, header: bytes) -> None:
        self.header: bytes | None = header

    def _header_once(self) -> bytes:
        header, self.header = self.header or b"", None
        return header

    def encode(self, pcm: bytes) -> bytes:
        return self._header_once() + pcm

    def finish(self) -> bytes:
        return self._header_once()


class _Container:
    """mp3, opus, aac, flac: the shared PyAV encoder (gpu_protocol.audio_container), fed s16 pcm."""

    def __init__(self, response_format: str) -> None:
        self.encoder = ContainerEncoder(response_format, PCM_RATE)

    def encode(self, pcm: bytes) -> bytes:
        return self.encoder.encode(np.frombuffer(pcm, dtype="<i2"), "s16")

    def finish(self) -> bytes:
        return self.encoder.finish()


class PcmEncoder:
    """One answer's audio in `response_format`, from pcm parts fed in order. `total_bytes`: the whole pcm's
    length when known before the first part (a WAV header then carries it)."""

    def __init__(self, response_format: str, total_bytes: int | None = None) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format {response_format!r}: one of {', '.join(RESPONSE_FORMATS)}")
        self._format: _Format
        if response_format == "pcm":
            self._format = _Raw(b"")
        elif response_format == "wav":
            self._format = _Raw(wav_header(PCM_RATE, total_bytes))
        else:
            self._format = _Container(response_format)

    def encode(self, pcm: bytes) -> bytes:
        """The bytes this part completes (may be empty)."""
        return self._format.encode(pcm)

    def finish(self) -> bytes:
        """The rest of the file (encoder delay, trailers). Call once, last."""
        return self._format.finish()


def encode_whole(parts: list[bytes], response_format: str) -> bytes:
    """The whole file of `parts` (a WAV's header carries its real length)."""
    encoder = PcmEncoder(response_format, total_bytes=sum(len(p) for p in parts))
    return b"".join([*(encoder.encode(p) for p in parts), encoder.finish()])
