"""Sentences of concurrent requests phonemized together, in as few espeak-ng processes as the cores allow.

espeak-ng runs as a process per call (phonemize.py), and starting one costs more than phonemizing a
sentence: measured on 2 vCPUs, one line took 20 ms of CPU, sixteen lines in one call 102 ms rather than
320. So a voice keeps at most `calls` espeak-ng processes running (one per core the voice uses), and a
sentence that arrives while they all run waits for the next call, which takes every sentence waiting by
then (up to `MAX_LINES`). A lone sentence goes at once: nothing waits for company that is not there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MAX_LINES = 64
"""Sentences per espeak-ng call at most."""

Phonemize = Callable[[list[str]], list[list[str]]]
"""Sentences -> each one's phonemes (blocking: runs espeak-ng)."""


class PhonemeBatches:
    def __init__(self, phonemize: Phonemize, calls: int) -> None:
        self._phonemize = phonemize
        self.calls = max(1, calls)
        self._waiting: list[tuple[str, asyncio.Future[list[str]]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def phonemes(self, sentence: str) -> list[str]:
        """`sentence`'s phonemes, from a call shared with the sentences waiting beside it."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting.append((sentence, future))
        self._start_calls()
        return await future

    def _start_calls(self) -> None:
        while self._waiting and len(self._running) < self.calls:
            lines, self._waiting = self._waiting[:MAX_LINES], self._waiting[MAX_LINES:]
            lines = [(sentence, future) for sentence, future in lines if not future.done()]  # callers gone
            if lines:
                task = asyncio.get_running_loop().create_task(self._call(lines))
                self._running.add(task)
                task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_calls()

    async def _call(self, lines: list[tuple[str, asyncio.Future[list[str]]]]) -> None:
        try:
            answers = await asyncio.to_thread(self._phonemize, [sentence for sentence, _ in lines])
        except Exception as exc:  # noqa: BLE001 - every waiting sentence learns what went wrong
            for _, future in lines:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), phonemes in zip(lines, answers, strict=True):
            if not future.done():
                future.set_result(phonemes)
