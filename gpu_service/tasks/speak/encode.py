"""Float audio -> the bytes of each `response_format`, whole or as a stream, with PyAV.

`AudioEncoder` takes a response's audio in order, one sentence's chunk at a time, and returns the bytes
each chunk completes, so a stream can send them at once; `finish` gives the rest. One encoder makes one
file: one container header, one RIFF header, whatever the number of sentences.

- mp3 (LAME), aac (ADTS frames), flac: at the voice's rate. opus: Ogg/Opus at 48 kHz, pages of at most
  `OPUS_PAGE_MS` so a sentence's audio leaves before the next sentence is ready.
- wav: 16-bit mono at the voice's rate behind one 44-byte RIFF header. When the whole length is known
  (`total_samples`), the header carries it. A stream does not know it: its RIFF and data sizes are then
  0xFFFFFFFF, the streaming convention ffmpeg and browsers read as "until the end of the stream".
- pcm: raw s16le mono resampled to `PCM_RATE` (24 kHz), no header.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import av
import numpy as np

from gpu_protocol.audio_container import ContainerEncoder
from gpu_protocol.speech_synthesis import CONTENT_TYPES, PCM_RATE, RESPONSE_FORMATS, wav_header


def pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as signed 16-bit little-endian."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _frame(audio: np.ndarray, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32)[None, :],
                                       format="flt", layout="mono")
    frame.sample_rate = sample_rate
    return frame


class _Format(Protocol):
    def encode(self, audio: np.ndarray) -> bytes: ...
    def finish(self) -> bytes: ...


class _Container:
    """mp3, opus, aac, flac: the shared PyAV encoder (gpu_protocol.audio_container), fed float samples."""

    def __init__(self, response_format: str, sample_rate: int) -> None:
        self.encoder = ContainerEncoder(response_format, sample_rate)

    def encode(self, audio: np.ndarray) -> bytes:
        return self.encoder.encode(np.asarray(audio, dtype=np.float32), "flt")

    def finish(self) -> bytes:
        return self.encoder.finish()


class _Wav:
    def __init__(self, sample_rate: int, total_samples: int | None) -> None:
        self.header: bytes | None = wav_header(sample_rate, None if total_samples is None else 2 * total_samples)

    def _header_once(self) -> bytes:
        header, self.header = self.header or b"", None
        return header

    def encode(self, audio: np.ndarray) -> bytes:
        return self._header_once() + pcm16(audio)

    def finish(self) -> bytes:
        return self._header_once()


class _Pcm:
    """s16le mono at PCM_RATE; the resampler keeps its state across chunks (no clicks at the seams)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)

    def _bytes(self, frames: list[av.AudioFrame]) -> bytes:
        return b"".join(f.to_ndarray().astype("<i2").tobytes() for f in frames)

    def encode(self, audio: np.ndarray) -> bytes:
        return self._bytes(self.resampler.resample(_frame(audio, self.sample_rate))) if len(audio) else b""

    def finish(self) -> bytes:
        return self._bytes(self.resampler.resample(None))


class AudioEncoder:
    """One response's audio in `response_format`, fed in order (module docstring)."""

    def __init__(self, response_format: str, sample_rate: int, total_samples: int | None = None) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format {response_format!r}: one of {', '.join(RESPONSE_FORMATS)}")
        self.content_type = CONTENT_TYPES[response_format]
        self._format: _Format
        if response_format == "wav":
            self._format = _Wav(sample_rate, total_samples)
        elif response_format == "pcm":
            self._format = _Pcm(sample_rate)
        else:
            self._format = _Container(response_format, sample_rate)

    def encode(self, audio: np.ndarray) -> bytes:
        """The bytes `audio` (float32 mono at the voice's rate) completes; may be empty."""
        return self._format.encode(audio)

    def finish(self) -> bytes:
        """The rest of the file (encoder delay, trailers). Call once, last."""
        return self._format.finish()


def stream_audio(chunks: Iterable[np.ndarray], response_format: str, sample_rate: int) -> Iterator[bytes]:
    """The file's bytes as each chunk is encoded (a WAV with the streaming header); empty pieces skipped."""
    encoder = AudioEncoder(response_format, sample_rate)
    for chunk in chunks:
        if data := encoder.encode(chunk):
            yield data
    if tail := encoder.finish():
        yield tail


def encode_audio(chunks: Iterable[np.ndarray], response_format: str, sample_rate: int) -> bytes:
    """The whole file (a WAV's header carries its real length)."""
    audio = list(chunks)
    encoder = AudioEncoder(response_format, sample_rate, total_samples=sum(len(a) for a in audio))
    return b"".join([*(encoder.encode(a) for a in audio), encoder.finish()])
