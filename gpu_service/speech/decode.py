"""Audio file bytes -> 16 kHz mono float32 samples, in a subprocess with a time limit.

Why a subprocess: decoding runs FFmpeg's C code (through PyAV) on bytes from the network. A hostile
or broken file can make a decoder spin or hang; a thread running it could never be stopped, so it
would hold a worker and its memory forever. A process is killed when its time is up
(`GPU_DECODE_TIMEOUT`), the event loop only awaits pipes, and a crash in the decoder is a 422
for that one request, not the service's death. The cost is a process start (~0.1 s; it imports
PyAV only), small beside the transcription itself.

Why `subprocess.Popen` on a thread of our own, not `asyncio.create_subprocess_exec`: under uvicorn
the loop is uvloop, whose libuv spawns with fork(). fork() runs OpenBLAS's pthread_atfork handler,
which waits for BLAS calls running in other threads (the feature extraction of another request on
the preparation thread), and under concurrent requests it waited forever with the event loop inside
it: the whole service hung (found by `bench/speech.py`, 32 clients). CPython's Popen uses vfork(),
which runs no fork handlers. The decoders' threads are our own (`DECODERS`), so a burst of uploads
never queues behind a model load on the loop's default executor.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gpu_service.errors import TooLarge, Unprocessable
from gpu_service.speech.decode_worker import NOT_AUDIO, RATE, TOO_LONG

DECODERS = ThreadPoolExecutor(max_workers=2 * len(os.sched_getaffinity(0)), thread_name_prefix="decode")
"""Decoder subprocesses at once (each waits on its child); more uploads wait their turn here."""


def _run_decoder(data: bytes, max_seconds: float, timeout_s: float) -> tuple[int, bytes, bytes] | None:
    """(exit status, stdout, stderr) of one decoder process, or None when it ran out of time (killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_service.speech.decode_worker", str(max_seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


async def decode_audio(data: bytes, *, filename: str, max_seconds: float, timeout_s: float) -> np.ndarray:
    """The samples of `data`, or a 4xx naming what was wrong with the file."""
    if not data:
        raise Unprocessable(f"file {filename!r} is empty; send an audio file (ogg, mp3, wav, flac, m4a, webm ...)")
    done = await asyncio.get_running_loop().run_in_executor(DECODERS, _run_decoder, data, max_seconds, timeout_s)
    if done is None:
        raise Unprocessable(
            f"file {filename!r} could not be decoded within {timeout_s:g}s (GPU_DECODE_TIMEOUT); "
            "it is corrupt or not a normal audio file"
        )
    returncode, out, err = done
    reason = err.decode("utf-8", "replace").strip()[:300]
    if returncode == TOO_LONG:
        raise TooLarge(f"file {filename!r} is longer than the limit of {max_seconds:g}s of audio "
                       "(GPU_MAX_AUDIO_SECONDS); split it")
    if returncode == NOT_AUDIO:
        raise Unprocessable(f"file {filename!r} is not audio this service can decode ({reason}); "
                            "send ogg/opus, mp3, wav, flac, m4a or webm")
    if returncode != 0:
        raise Unprocessable(f"file {filename!r} crashed the audio decoder (exit status {returncode}); "
                            "it is corrupt or not a normal audio file")
    samples = np.frombuffer(out, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise Unprocessable(f"file {filename!r} has an audio stream but no samples could be decoded "
                            "(truncated or corrupt)")
    return samples


__all__ = ["RATE", "decode_audio"]
