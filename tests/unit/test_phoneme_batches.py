"""Sentences of concurrent requests share espeak-ng calls (gpu_service/tasks/speak/phoneme_batches.py).

The phonemizer here is a fake that records its calls and can be held, so each test sets up exactly the
calls it means; the real espeak-ng path is covered by tests/unit/test_speak_engine.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from gpu_service.tasks.speak.phoneme_batches import MAX_LINES, PhonemeBatches
from tests.support.waiting import wait_until_async


class HeldPhonemizer:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.fail = fail

    def __call__(self, sentences: list[str]) -> list[list[str]]:
        self.calls.append(list(sentences))
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("espeak-ng failed (1)")
        return [list(sentence.lower()) for sentence in sentences]


@pytest.mark.anyio
async def test_sentences_that_arrive_while_every_call_runs_share_the_next_call() -> None:
    phonemizer = HeldPhonemizer()
    batches = PhonemeBatches(phonemizer, calls=2)
    first = [asyncio.create_task(batches.phonemes(s)) for s in ("A", "B")]
    await wait_until_async(lambda: len(phonemizer.calls) == 2, timeout=10)
    later = [asyncio.create_task(batches.phonemes(f"S{i}")) for i in range(5)]
    await asyncio.sleep(0.05)
    assert len(phonemizer.calls) == 2, "a third espeak-ng process started while two ran"
    phonemizer.gate.set()
    assert [await t for t in first] == [["a"], ["b"]]
    assert [await t for t in later] == [list(f"s{i}") for i in range(5)]
    assert phonemizer.calls == [["A"], ["B"], [f"S{i}" for i in range(5)]]


@pytest.mark.anyio
async def test_a_call_takes_at_most_max_lines_and_callers_who_left_are_not_phonemized() -> None:
    phonemizer = HeldPhonemizer()
    batches = PhonemeBatches(phonemizer, calls=1)
    busy = asyncio.create_task(batches.phonemes("busy"))
    await wait_until_async(lambda: len(phonemizer.calls) == 1, timeout=10)
    gone = asyncio.create_task(batches.phonemes("gone"))
    rest = [asyncio.create_task(batches.phonemes(f"s{i}")) for i in range(MAX_LINES + 1)]
    await asyncio.sleep(0)
    gone.cancel()
    phonemizer.gate.set()
    await asyncio.gather(busy, *rest)
    assert [len(call) for call in phonemizer.calls] == [1, MAX_LINES - 1, 2]  # "gone" left its place empty
    assert all("gone" not in call for call in phonemizer.calls)


@pytest.mark.anyio
async def test_a_failed_call_fails_each_of_its_sentences_and_the_next_call_still_runs() -> None:
    phonemizer = HeldPhonemizer(fail=True)
    batches = PhonemeBatches(phonemizer, calls=1)
    phonemizer.gate.set()
    results = await asyncio.gather(batches.phonemes("a"), batches.phonemes("b"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "espeak-ng failed" in str(r) for r in results)
    phonemizer.fail = False
    assert await batches.phonemes("c") == ["c"]
