"""A model's preparation thread takes its work in class order (gpu_service/scheduling/prep.py).

A fake preparation is held on an event, so each test sets up exactly the queue it means (a one-hour
recording's preparation running, another waiting, a voice note arriving) and reads the order the
pieces ran in: no timing is asserted.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from gpu_service.models.registry import LoadedModel, ModelKey
from gpu_service.scheduling.lanes import Lane
from gpu_service.scheduling.prep import PrepQueue
from tests.support.waiting import wait_until_async

BULK = Lane("batch", "archive")
AGENT = Lane("interactive", "agent")


class HeldPrep:
    """Preparation that records what it prepared and on which thread, each piece waiting for `gate`."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.started = threading.Event()

    def prepare(self, name: str) -> str:
        self.started.set()
        self.gate.wait(10)
        self.threads.add(threading.get_ident())
        self.done.append(name)
        return name.upper()


def model_with(prep: PrepQueue) -> LoadedModel:
    return LoadedModel(key=ModelKey("transcribe", "fake"), engine=None, scheduler=None,  # type: ignore[arg-type]
                       prep=prep, default=False)


async def queued(prep: PrepQueue, count: int) -> None:
    await wait_until_async(lambda: sum(prep.queued().values()) == count, timeout=10,
                           message=f"{count} pieces never waited")


@pytest.mark.anyio
async def test_a_voice_note_is_prepared_before_a_waiting_long_recording() -> None:
    held, prep = HeldPrep(), PrepQueue("fake")
    model = model_with(prep)
    try:
        first_hour = asyncio.create_task(model.prepare(held.prepare, "hour-1", lane=BULK))
        await wait_until_async(held.started.is_set, timeout=10, message="the first preparation never started")
        second_hour = asyncio.create_task(model.prepare(held.prepare, "hour-2", lane=BULK))
        await queued(prep, 1)
        voice_note = asyncio.create_task(model.prepare(held.prepare, "note", lane=AGENT))
        await queued(prep, 2)
        held.gate.set()
        assert await asyncio.gather(first_hour, second_hour, voice_note) == ["HOUR-1", "HOUR-2", "NOTE"]
        assert held.done == ["hour-1", "note", "hour-2"]  # the running one finishes; the note overtakes the waiting one
        assert len(held.threads) == 1  # one thread: the only one that touches the tokenizer
    finally:
        held.gate.set()
        prep.close()


@pytest.mark.anyio
async def test_batch_preparation_keeps_its_share_under_interactive_work() -> None:
    held, prep = HeldPrep(), PrepQueue("fake")
    try:
        first = asyncio.create_task(prep.run(AGENT, held.prepare, "q0"))
        await wait_until_async(held.started.is_set, timeout=10, message="the first preparation never started")
        bulk = asyncio.create_task(prep.run(BULK, held.prepare, "bulk"))
        queries = [asyncio.create_task(prep.run(AGENT, held.prepare, f"q{i}")) for i in range(1, 8)]
        await queued(prep, 8)
        held.gate.set()
        await asyncio.gather(first, bulk, *queries)
        assert held.done.index("bulk") <= 4  # not after every query: batch gets one turn in BATCH_SHARE_EVERY
    finally:
        held.gate.set()
        prep.close()


@pytest.mark.anyio
async def test_errors_reach_their_caller_and_a_caller_that_gave_up_is_skipped() -> None:
    held, prep = HeldPrep(), PrepQueue("fake")

    def broken(_: str) -> str:
        raise ValueError("bad audio")

    try:
        running = asyncio.create_task(prep.run(BULK, held.prepare, "running"))
        await wait_until_async(held.started.is_set, timeout=10, message="the first preparation never started")
        gave_up = asyncio.create_task(prep.run(AGENT, held.prepare, "gave-up"))
        failing = asyncio.create_task(prep.run(AGENT, broken, "x"))
        await queued(prep, 2)
        gave_up.cancel()
        held.gate.set()
        assert await running == "RUNNING"
        with pytest.raises(ValueError, match="bad audio"):
            await failing
        assert held.done == ["running"]
    finally:
        held.gate.set()
        prep.close()


@pytest.mark.anyio
async def test_closing_cancels_what_waits_and_refuses_new_work() -> None:
    held, prep = HeldPrep(), PrepQueue("fake")
    running = asyncio.create_task(prep.run(BULK, held.prepare, "running"))
    await wait_until_async(held.started.is_set, timeout=10, message="the first preparation never started")
    waiting = asyncio.create_task(prep.run(BULK, held.prepare, "waiting"))
    await queued(prep, 1)
    prep.close()
    held.gate.set()
    assert await running == "RUNNING"
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RuntimeError):
        await prep.run(AGENT, held.prepare, "late")
    assert held.done == ["running"]
