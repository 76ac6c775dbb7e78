"""Audio file bytes -> 16 kHz mono float32 samples, in a subprocess with a time limit.

Why a subprocess: decoding runs FFmpeg's C code (through PyAV) on bytes from the network. A hostile
or broken file can make a decoder spin or hang; a thread running it could never be stopped, so it
would hold a worker and its memory forever. A process is killed when its time is up
(`GPU_DECODE_TIMEOUT`), the event loop only awaits pipes, and a crash in the decoder is a 422
for that one request, not the service's death. The cost is a process start (~0.1 s; it imports
PyAV only), small beside the transcription itself.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

from gpu_service.errors import TooLarge, Unprocessable
from gpu_service.speech.decode_worker import NOT_AUDIO, RATE, TOO_LONG


async def decode_audio(data: bytes, *, filename: str, max_seconds: float, timeout_s: float) -> np.ndarray:
    """The samples of `data`, or a 4xx naming what was wrong with the file."""
    if not data:
        raise Unprocessable(f"file {filename!r} is empty; send an audio file (ogg, mp3, wav, flac, m4a, webm ...)")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpu_service.speech.decode_worker", str(max_seconds),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), timeout_s)
    except TimeoutError:
        raise Unprocessable(
            f"file {filename!r} could not be decoded within {timeout_s:g}s (GPU_DECODE_TIMEOUT); "
            "it is corrupt or not a normal audio file"
        ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    reason = err.decode("utf-8", "replace").strip()[:300]
    if proc.returncode == TOO_LONG:
        raise TooLarge(f"file {filename!r} is longer than the limit of {max_seconds:g}s of audio "
                       "(GPU_MAX_AUDIO_SECONDS); split it")
    if proc.returncode == NOT_AUDIO:
        raise Unprocessable(f"file {filename!r} is not audio this service can decode ({reason}); "
                            "send ogg/opus, mp3, wav, flac, m4a or webm")
    if proc.returncode != 0:
        raise Unprocessable(f"file {filename!r} crashed the audio decoder (exit status {proc.returncode}); "
                            "it is corrupt or not a normal audio file")
    samples = np.frombuffer(out, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise Unprocessable(f"file {filename!r} has an audio stream but no samples could be decoded "
                            "(truncated or corrupt)")
    return samples


__all__ = ["RATE", "decode_audio"]
