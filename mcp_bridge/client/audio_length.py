"""An audio file's length without decoding it, where its header says so cheaply (a WAV file's RIFF header).

The bridge decides a transcription's class (a voice note interactive, an hour's recording batch:
gpu_protocol.priority.audio_by_size) before any host decodes the file. A WAV file's header gives its
length exactly: its byte rate and the size of its samples. Its bytes say little (a 30-second voice note
recorded at 44.1 kHz stereo is 5 MB), and neither do those of a compressed file (an Opus voice note is a
few kB a second, FLAC ~90 kB), so for any other file the bridge does not guess: `None`.
"""

from __future__ import annotations

import struct

_HEADER = 12
"""`RIFF`, the size of what follows, `WAVE`."""
_CHUNK = 8
"""Each chunk: its four-letter id and the size of its data."""
_STREAMED = (0, 0xFFFFFFFF)
"""The data sizes a writer that did not know the length leaves (a stream): the data then runs to the end."""


def wav_seconds(data: bytes) -> float | None:
    """The length in seconds a WAV file's header gives (its data chunk's size over its byte rate, the data
    cut at the end of what arrived); None for anything else, or a header that does not add up."""
    if len(data) < _HEADER or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    byte_rate: int | None = None
    offset = _HEADER
    while offset + _CHUNK <= len(data):
        chunk_id, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + _CHUNK
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(data):
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif chunk_id == b"data":
            if not byte_rate:
                return None  # no format before the samples (or a rate of 0): not a file to trust
            present = len(data) - body
            samples = present if size in _STREAMED else min(size, present)
            return samples / byte_rate
        offset = body + size + (size & 1)  # chunks are padded to an even length
    return None
