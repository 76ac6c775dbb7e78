"""A decoder process: audio files in, 16 kHz mono signed 16-bit PCM out, one file after another.

Run as a script, `python -P .../decode_worker.py` (the service's `DecoderPool` starts it, `WORKER_COMMAND`). It
imports only PyAV (and numpy under it), so it starts in a fraction of a second, and then serves
files until its stdin closes: each request on stdin is a `REQUEST` header (the file's limit in
seconds of audio, its length in bytes) and the file; each reply on stdout is a `REPLY` header
(status, lengths) and then the reason text and the PCM. Status 0: decoded; `NOT_AUDIO`: not
decodable audio (the reason says why); `TOO_LONG`: longer than the limit. The service kills the
process when a file runs past its time limit (a thread cannot be stopped, a process can) and reads
an exit without a reply as a crash of the decoder on that file.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import sys

from gpu_protocol.audio import RATE

NOT_AUDIO = 3
TOO_LONG = 4

REQUEST = struct.Struct("<dQ")
"""A request's header: the limit in seconds of audio (float64), then the file's length in bytes."""
REPLY = struct.Struct("<iIQ")
"""A reply's header: the status, the length of the reason text (UTF-8), the length of the PCM."""


def decode(data: bytes, max_seconds: float) -> tuple[int, str, bytearray]:
    """(status, reason, PCM) of one audio file: the only definition of how the service decodes."""
    import av

    pcm = bytearray()
    samples = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return NOT_AUDIO, "the file has no audio stream", bytearray()
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(stream):
                for chunk in resampler.resample(frame):
                    block = chunk.to_ndarray().tobytes()
                    samples += len(block) // 2
                    if samples > max_seconds * RATE:
                        return TOO_LONG, f"{max_seconds:g}", bytearray()
                    pcm += block
            for chunk in resampler.resample(None):
                pcm += chunk.to_ndarray().tobytes()
    except (av.FFmpegError, ValueError, IndexError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
        return NOT_AUDIO, str(reason).splitlines()[0], bytearray()
    return 0, "", pcm


def serve() -> int:
    """Answer requests until stdin closes (the service stopped this worker, or the service is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the service: it drains, then stops us
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else writes to stdout goes to stderr, never into a reply
    requests = sys.stdin.buffer
    while True:
        head = requests.read(REQUEST.size)
        if len(head) < REQUEST.size:
            return 0
        max_seconds, size = REQUEST.unpack(head)
        data = requests.read(size)
        if len(data) < size:
            return 0
        status, reason, pcm = decode(data, max_seconds)
        text = reason.encode("utf-8", "replace")
        replies.write(REPLY.pack(status, len(text), len(pcm)))
        replies.write(text)
        replies.write(pcm)
        replies.flush()


if __name__ == "__main__":
    sys.exit(serve())
