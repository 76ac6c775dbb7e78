"""One answer's audio in a compressed container (mp3, opus, aac, flac), made with PyAV in memory: the one
encoder the service (float samples from its voice) and the bridge (s16 pcm parts from its hosts) both use.

Each `encode` returns the bytes the samples complete, so a stream can send them at once; `finish` gives the
rest (encoder delay, trailers). Opus goes in Ogg at `OPUS_RATE`, in pages of at most `OPUS_PAGE_MS`, so a
sentence's audio leaves before the next is ready. PyAV is imported when an encoder is made, not with this
module (it is optional on the bridge: its `speech` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_protocol.speech_synthesis import CONTAINERS, OPUS_PAGE_MS, OPUS_RATE

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer


class _Sink:
    """A write-only file for PyAV's muxer (not seekable, so nothing is rewritten later); drained per chunk."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def drain(self) -> bytes:
        data, self.buffer = bytes(self.buffer), bytearray()
        return data


class ContainerEncoder:
    """mp3, opus, aac or flac of mono samples at `sample_rate`, fed in order."""

    def __init__(self, response_format: str, sample_rate: int) -> None:
        import av
        from av.audio.stream import AudioStream

        self._av = av
        self.sample_rate = sample_rate
        container, codec = CONTAINERS[response_format]
        self.sink = _Sink()
        options = {"page_duration": str(OPUS_PAGE_MS * 1000)} if container == "ogg" else {}
        self.output: OutputContainer = av.open(self.sink, "w", format=container, options=options)
        stream = self.output.add_stream(codec, rate=OPUS_RATE if response_format == "opus" else sample_rate,
                                        layout="mono")
        assert isinstance(stream, AudioStream)
        self.stream: AudioStream = stream

    def encode(self, samples: np.ndarray, sample_format: str) -> bytes:
        """The bytes `samples` complete (may be empty). `sample_format`: PyAV's name for their type, `flt`
        for float32 in [-1, 1], `s16` for 16-bit integers."""
        if len(samples):
            frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(samples)[None, :], format=sample_format,
                                                     layout="mono")
            frame.sample_rate = self.sample_rate
            for packet in self.stream.encode(frame):
                self.output.mux(packet)
        return self.sink.drain()

    def finish(self) -> bytes:
        for packet in self.stream.encode(None):
            self.output.mux(packet)
        self.output.close()
        return self.sink.drain()
