"""Audio file bytes -> 16 kHz mono float32 samples, in a decoder process with a time limit.

Why a separate process: decoding runs FFmpeg's C code (through PyAV) on bytes from the network. A
hostile or broken file can make a decoder spin or hang; a thread running it could never be stopped,
so it would hold a worker and its memory forever. A process is killed when its time is up
(`GPU_DECODE_TIMEOUT`), and a crash in the decoder is a 422 for that one request, not the service's
death. The processes are long-lived workers (`decoders.DecoderPool`: one per CPU, started when
first needed, replaced when killed, crashed or after `RECYCLE_AFTER` files, stopped by the
service's lifespan), so a file costs a pipe round trip, not a Python start with its imports.

Why `subprocess.Popen` on a thread of our own, not `asyncio.create_subprocess_exec`: under uvicorn
the loop is uvloop, whose libuv spawns with fork(). fork() runs OpenBLAS's pthread_atfork handler,
which waits for BLAS calls running in other threads (the feature extraction of another request on
the preparation thread), and under concurrent requests it waited forever with the event loop inside
it: the whole service hung (found by `bench/speech.py`, 32 clients). CPython's Popen uses vfork(),
which runs no fork handlers. The decoders' threads are our own (`Decoders`, one per worker): each
borrows a worker and waits on its pipes there, so the event loop never blocks and a burst of
uploads never queues behind a model load on the loop's default executor.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gpu_service.errors import TooLarge, Unprocessable
from gpu_service.tasks.transcribe.decode_worker import NOT_AUDIO, TOO_LONG
from gpu_service.tasks.transcribe.decoders import Crashed, Decoded, DecoderPool


class Decoders:
    """The service's decoder processes (`DecoderPool`: one per CPU this process may run on) and one thread
    per process waiting on its pipes. The speech service builds one (so the state does, once per app) and
    the lifespan closes it on the way out; a file after `close` starts new processes."""

    def __init__(self, pool: DecoderPool | None = None) -> None:
        self.pool = pool or DecoderPool()
        self._threads = ThreadPoolExecutor(max_workers=self.pool.size, thread_name_prefix="decode")
        """One thread per decoder process, waiting on its pipes; more uploads wait their turn here."""

    def close(self) -> None:
        """Stop the decoder processes."""
        self.pool.close()

    async def decode(self, data: bytes, *, filename: str, max_seconds: float, timeout_s: float) -> np.ndarray:
        """The samples of `data`, or a 4xx naming what was wrong with the file."""
        if not data:
            raise Unprocessable(f"file {filename!r} is empty; send an audio file (ogg, mp3, wav, flac, m4a, webm ...)")
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self._threads, self.pool.decode, data, max_seconds, timeout_s)
        return _samples(done, filename, max_seconds, timeout_s)


def _samples(done: Decoded | Crashed | None, filename: str, max_seconds: float, timeout_s: float) -> np.ndarray:
    """A decoder's answer as samples, or the 4xx that says what was wrong with the file."""
    if done is None:
        raise Unprocessable(
            f"file {filename!r} could not be decoded within {timeout_s:g}s (GPU_DECODE_TIMEOUT); "
            "it is corrupt or not a normal audio file"
        )
    if isinstance(done, Crashed):
        raise Unprocessable(f"file {filename!r} crashed the audio decoder (exit status {done.exit_status}); "
                            "it is corrupt or not a normal audio file")
    reason = done.reason.strip()[:300]
    if done.status == TOO_LONG:
        raise TooLarge(f"file {filename!r} is longer than the limit of {max_seconds:g}s of audio "
                       "(GPU_MAX_AUDIO_SECONDS); split it")
    if done.status == NOT_AUDIO:
        raise Unprocessable(f"file {filename!r} is not audio this service can decode ({reason}); "
                            "send ogg/opus, mp3, wav, flac, m4a or webm")
    samples = np.frombuffer(done.pcm, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise Unprocessable(f"file {filename!r} has an audio stream but no samples could be decoded "
                            "(truncated or corrupt)")
    return samples
