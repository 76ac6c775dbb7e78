"""Decoding audio on the bridge, only to split a long recording: PyAV (the `speech` extra) in a child process.

An audio file from an agent or an HTTP client may be hostile (a decoder that loops, a bomb that
decodes to hours): the decoding runs in its own process, killed at a time limit, so it can never
hang the bridge's event loop nor take its memory with it. The child reads the file on stdin and
writes one JSON line (`{"duration": s, "pcm": bool}`) and, when the audio is longer than asked,
its samples as 16 kHz mono signed 16-bit little-endian; a file it cannot read exits 2 with the
reason on stderr.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu_protocol.audio import RATE

DECODE_TIMEOUT_S = 120.0
UNREADABLE_EXIT = 2


class AudioUnreadable(ValueError):
    """The bridge could not decode the audio (not audio, corrupt, or too slow to decode)."""


@dataclass(frozen=True)
class Decoded:
    duration: float
    pcm: np.ndarray | None
    """int16 samples at RATE, mono; None when the audio is not longer than asked (not decoded)."""


def can_decode() -> bool:
    """Whether PyAV is installed (`pip install 'openclaw-gpu-bridge[speech]'`)."""
    return importlib.util.find_spec("av") is not None


async def decode(data: bytes, longer_than: float, timeout: float = DECODE_TIMEOUT_S) -> Decoded:
    """The audio's duration, and its samples when it is longer than `longer_than` seconds."""
    # Popen, not asyncio.create_subprocess_exec: under uvloop that spawns with fork(), which runs
    # OpenBLAS's fork handlers and hung the service under concurrent requests (gpu_service's
    # tasks/transcribe/decode.py says how); Popen uses vfork. Its pipes are waited on a thread.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_bridge.client.audio_decode", repr(longer_than)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.to_thread(proc.communicate, data, timeout)
    except BaseException as exc:  # the time limit, or the call was cancelled: the child goes too
        proc.kill()
        if isinstance(exc, subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.communicate)  # reap it
            raise AudioUnreadable(f"decoding the audio took over {timeout:g}s; it is not audio the bridge can "
                                  "split") from None
        raise
    if proc.returncode != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["the decoder failed"]
        raise AudioUnreadable(reason[0][:300])
    head, _, body = out.partition(b"\n")
    header = json.loads(head)
    pcm = np.frombuffer(body, dtype="<i2") if header["pcm"] else None
    return Decoded(float(header["duration"]), pcm)


# --------------------------------------------------------------------------- the child


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _samples(container: Any, stream: Any) -> bytes:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks: list[bytes] = []
    for frame in container.decode(stream):
        chunks.extend(f.to_ndarray().tobytes() for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray().tobytes() for f in resampler.resample(None))
    return b"".join(chunks)


def main() -> int:
    longer_than = float(sys.argv[1])
    data = sys.stdin.buffer.read()
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise ValueError("the file has no audio stream")
            stream = container.streams.audio[0]
            duration = _duration(container, stream)
            if duration is not None and duration <= longer_than:
                sys.stdout.buffer.write(json.dumps({"duration": duration, "pcm": False}).encode() + b"\n")
                return 0
            pcm = _samples(container, stream)
    except Exception as exc:  # noqa: BLE001 - any failure on a hostile file is "not readable audio"
        print(f"not readable audio ({str(exc)[:200] or 'the decoder failed'})", file=sys.stderr)
        return UNREADABLE_EXIT
    if not pcm:
        print("not readable audio (no samples decoded)", file=sys.stderr)
        return UNREADABLE_EXIT
    sys.stdout.buffer.write(json.dumps({"duration": len(pcm) / 2 / RATE, "pcm": True}).encode() + b"\n" + pcm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
