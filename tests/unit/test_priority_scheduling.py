"""Priority classes and tenants in the batch scheduler (scheduling/lanes.py), with a fake engine.

The fake engine records every batch it runs and can be held on an event, so each test sets up exactly
the queue it means (a bulk request being worked off, an interactive call arriving) and reads the order
the batches ran in: no timing is asserted.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gpu_protocol.priority import (
    ClassChooser,
    audio_by_size,
    by_size,
    capped,
    estimate_audio_seconds,
    estimate_tokens,
    parse_priority,
    parse_tenant,
    rerank_by_size,
    speak_by_size,
)
from gpu_service.errors import Overloaded
from gpu_service.scheduling import batching
from gpu_service.scheduling.batching import BATCH_TARGET_S, SHARED_BATCH_TARGET_S, BatchScheduler
from gpu_service.scheduling.class_queue import Item
from gpu_service.scheduling.lanes import Lane, TenantQueue, lane_for
from tests.support.waiting import wait_until_async

BULK = Lane("batch", "indexer")
AGENT = Lane("interactive", "agent")


class HeldEngine:
    """Runs batches on the model thread, each waiting for `gate` while it is closed; records them."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def run(self, payloads: list[str]) -> list[str]:
        self.started.set()
        self.gate.wait(10)
        self.batches.append(list(payloads))
        return payloads


class TokenTimedEngine(HeldEngine):
    """Takes `seconds` per padded token of a batch of texts of five tokens each (as the tests submit them)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self, payloads: list[str]) -> list[str]:
        time.sleep(self.seconds * 5 * len(payloads))
        return super().run(payloads)


def scheduler(engine: HeldEngine, **kw: object) -> BatchScheduler[str, str]:
    options: dict[str, object] = dict(max_batch_tokens=10_000, max_batch_size=4, max_queue=1000, window_s=0.0,
                                      device_slots=threading.BoundedSemaphore(1))
    options.update(kw)
    return BatchScheduler("fake", engine.run, **options)  # type: ignore[arg-type]


async def hold_first_batch(engine: HeldEngine, sched: BatchScheduler[str, str], bulk: list[str]) -> asyncio.Task:
    """Start `bulk` as a batch-class request and hold its first batch on the device."""
    engine.gate.clear()
    task = asyncio.create_task(sched.submit(bulk, [1] * len(bulk), lane=BULK))
    await wait_until_async(engine.started.is_set, timeout=10, message="the bulk request's first batch never started")
    return task


def batch_of(engine: HeldEngine, text: str) -> int:
    return next(i for i, batch in enumerate(engine.batches) if text in batch)


@pytest.mark.anyio
async def test_an_interactive_call_goes_into_the_next_batch_not_behind_the_backlog() -> None:
    engine = HeldEngine()
    sched = scheduler(engine)
    bulk = [f"doc{i}" for i in range(40)]  # ten batches of four
    bulk_task = await hold_first_batch(engine, sched, bulk)
    query = asyncio.create_task(sched.submit(["query"], [1], lane=AGENT))
    await wait_until_async(lambda: sched.queued_by_class()["interactive"] == 1, timeout=10)
    engine.gate.set()
    assert await query == ["query"]
    assert await bulk_task == bulk
    assert batch_of(engine, "query") == 1, engine.batches
    assert sched.queued_by_class() == {"interactive": 0, "batch": 0}
    await sched.close()


@pytest.mark.anyio
async def test_batch_keeps_its_share_while_interactive_work_waits() -> None:
    """Interactive work waiting all along: still one batch in four is the bulk request's (never starved)."""
    engine = HeldEngine()
    sched = scheduler(engine)
    bulk_task = await hold_first_batch(engine, sched, [f"doc{i}" for i in range(40)])
    calls = [asyncio.create_task(sched.submit([f"q{i}"], [1], lane=AGENT)) for i in range(40)]
    await wait_until_async(lambda: sched.queued_by_class()["interactive"] == 40, timeout=10)
    engine.gate.set()
    await asyncio.gather(bulk_task, *calls)
    kinds = ["batch" if batch[0].startswith("doc") else "interactive" for batch in engine.batches[1:]]
    first_bulk_again = kinds.index("batch")
    assert first_bulk_again <= 3, kinds  # at most three interactive batches before bulk runs again
    assert "batch" in kinds[:8] and kinds[:8].count("batch") >= 2, kinds
    await sched.close()


@pytest.mark.anyio
async def test_tenants_of_one_class_are_served_in_turn_by_items() -> None:
    """One tenant's 40 items queued first, another's 4 after: the second is not served last."""
    engine = HeldEngine()
    sched = scheduler(engine)
    blocker = await hold_first_batch(engine, sched, ["hold"])
    big = asyncio.create_task(sched.submit([f"a{i}" for i in range(40)], [1] * 40, lane=Lane("batch", "a")))
    small = asyncio.create_task(sched.submit([f"b{i}" for i in range(4)], [1] * 4, lane=Lane("batch", "b")))
    await wait_until_async(lambda: sched.queued_by_class()["batch"] == 44, timeout=10)
    engine.gate.set()
    await asyncio.gather(blocker, big, small)
    order = [text for batch in engine.batches[1:] for text in batch]
    assert max(order.index(f"b{i}") for i in range(4)) < 16, order  # within the first round, beside a0..a3
    await sched.close()


@pytest.mark.anyio
async def test_a_tenant_that_arrives_mid_round_is_served_in_the_next_batch_not_after_the_round() -> None:
    """A round of tenant a's items is being worked off (16 items: four batches of four); tenant b's items
    arrive after its first batch started: the round is formed again with b in turn, b's oldest item runs in
    the very next batch, and a's items keep their place (none lost, none run twice)."""
    engine = HeldEngine()
    sched = scheduler(engine)
    first = await hold_first_batch(engine, sched, [f"a{i}" for i in range(16)])
    late = asyncio.create_task(sched.submit([f"b{i}" for i in range(4)], [1] * 4, lane=Lane("batch", "b")))
    await wait_until_async(lambda: sched.queued_by_class()["batch"] == 16, timeout=10)  # 12 of a's + 4 of b's
    engine.gate.set()
    await asyncio.gather(first, late)
    assert any(text.startswith("b") for text in engine.batches[1]), engine.batches
    ran = sorted(text for batch in engine.batches for text in batch)
    assert ran == sorted([f"a{i}" for i in range(16)] + [f"b{i}" for i in range(4)])
    await sched.close()


@pytest.mark.anyio
async def test_a_tenant_with_only_its_last_item_left_in_the_round_has_its_next_request_served_in_turn() -> None:
    """Tenant b's one long item sorts to the end of a round of a's short ones; b's next request arrives
    after the round's first batch started: b holds too little of what is left of the round to wait it out,
    so the round is formed again and b's new items run in the very next batch (none lost, none run twice)."""
    engine = HeldEngine()
    sched = scheduler(engine)
    engine.gate.clear()
    first = asyncio.create_task(sched.submit([f"a{i}" for i in range(16)], [1] * 16, lane=Lane("batch", "a")))
    last = asyncio.create_task(sched.submit(["b0"], [5], lane=Lane("batch", "b")))
    await wait_until_async(engine.started.is_set, timeout=10, message="the round's first batch never started")
    following = asyncio.create_task(sched.submit([f"b{i}" for i in range(1, 5)], [1] * 4, lane=Lane("batch", "b")))
    await wait_until_async(lambda: sched.queued_by_class()["batch"] == 17, timeout=10)  # 12 of a's + b0..b4
    engine.gate.set()
    await asyncio.gather(first, last, following)
    assert engine.batches[0] == ["a0", "a1", "a2", "a3"], engine.batches
    assert any(text in {"b1", "b2", "b3", "b4"} for text in engine.batches[1]), engine.batches
    ran = sorted(text for batch in engine.batches for text in batch)
    assert ran == sorted([f"a{i}" for i in range(16)] + [f"b{i}" for i in range(5)])
    await sched.close()


@pytest.mark.anyio
async def test_overload_refuses_batch_work_and_never_interactive_work() -> None:
    engine = HeldEngine()
    sched = scheduler(engine, max_queue=10)
    blocker = await hold_first_batch(engine, sched, ["hold"])
    queued = asyncio.create_task(sched.submit([f"d{i}" for i in range(10)], [1] * 10, lane=BULK))
    await wait_until_async(lambda: sched.queued_by_class()["batch"] == 10, timeout=10)
    with pytest.raises(Overloaded) as refused:
        await sched.submit(["one more"], [1], lane=BULK)
    assert "batch items queued" in refused.value.detail and 1 <= refused.value.retry_after_s <= 60
    interactive = asyncio.create_task(sched.submit(["query"], [1], lane=AGENT))
    await wait_until_async(lambda: sched.queued_by_class()["interactive"] == 1, timeout=10)
    engine.gate.set()
    assert await interactive == ["query"]
    await asyncio.gather(blocker, queued)
    await sched.close()


@pytest.mark.anyio
async def test_a_batch_class_batch_is_kept_to_the_target_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the cost per token is measured, batch-class batches hold about BATCH_TARGET_S of work. The engine
    takes 2.5 ms per padded token and the target is 50 ms (so the measurements keep 20 tokens the target)."""
    monkeypatch.setattr(batching, "BATCH_TARGET_S", 0.05)
    engine = TokenTimedEngine(0.0025)
    sched = scheduler(engine, max_batch_size=64)
    sched.stats.s_per_token = 0.0025  # as if measured: 20 tokens fill the target
    await sched.submit([f"doc{i}" for i in range(30)], [5] * 30, lane=BULK)
    assert max(len(b) for b in engine.batches) <= 4, [len(b) for b in engine.batches]  # 4 x 5 tokens
    engine.batches.clear()
    await sched.submit([f"q{i}" for i in range(30)], [5] * 30, lane=AGENT)
    assert max(len(b) for b in engine.batches) > 4, "interactive batches are not cut to the batch target"
    await sched.close()


@pytest.mark.anyio
async def test_while_tenants_share_a_batch_round_holds_a_few_target_batches_not_a_few_full_batches() -> None:
    """Two tenants' sixteen items each, of 16 tokens down to 1 (each queued longest first); 32 tokens fill a
    batch's shared target: the first round stops near four such batches (128 tokens), the longest items of both
    in turn, so the shortest of all wait for the next round. A round of four full batches (4 x 8 items) would
    hold 32 items and start with the shortest. One tenant's round is bounded by items only."""
    engine = HeldEngine()
    sched = scheduler(engine, max_batch_size=8)
    sched.stats.s_per_token = SHARED_BATCH_TARGET_S / 32
    costs = list(range(16, 0, -1))
    engine.gate.clear()
    calls = [asyncio.create_task(sched.submit([f"{t}{c}" for c in costs], costs, lane=Lane("batch", t))) for t in "ab"]
    await wait_until_async(engine.started.is_set, timeout=10)
    engine.gate.set()
    await asyncio.gather(*calls)
    assert all(int(text[1:]) >= 12 for text in engine.batches[0]), engine.batches  # from the round's 9 longest
    engine.batches.clear()
    sched.stats.s_per_token = SHARED_BATCH_TARGET_S / 32  # alone, 64 tokens fill the target
    costs = list(range(32, 0, -1))  # 528 tokens, over four such batches
    await sched.submit([f"doc{cost}" for cost in costs], costs, lane=BULK)
    assert "doc1" in engine.batches[0], engine.batches  # alone: all 32 (4 x 8 items) in one round, shortest first
    await sched.close()


@pytest.mark.anyio
async def test_batch_class_batches_are_shorter_while_several_tenants_wait() -> None:
    """20 tokens fill BATCH_TARGET_S: one tenant's bulk runs in batches of four 5-token texts; while two tenants
    wait, batches hold SHARED_BATCH_TARGET_S (two texts), so each tenant's turn comes sooner."""
    assert SHARED_BATCH_TARGET_S == BATCH_TARGET_S / 2
    for tenants, size in ((["indexer"], 4), (["indexer", "other"], 2)):
        engine = HeldEngine()
        sched = scheduler(engine, max_batch_size=64)
        sched.stats.s_per_token = BATCH_TARGET_S / 20
        engine.gate.clear()  # both tenants' requests queue before the first round is formed
        calls = [asyncio.create_task(sched.submit([f"{t}{i}" for i in range(12)], [5] * 12, lane=Lane("batch", t)))
                 for t in tenants]
        await wait_until_async(engine.started.is_set, timeout=10)
        engine.gate.set()
        await asyncio.gather(*calls)
        assert len(engine.batches[0]) == size, (tenants, engine.batches)
        await sched.close()


@pytest.mark.anyio
async def test_a_voice_note_goes_into_the_next_batch_while_a_long_recording_is_transcribed() -> None:
    """Transcription's classes in the scheduler, lanes and chunk costs as its service makes them (each 30 s
    chunk an equal share of a batch). In-process: on a real service, Whisper would have to work through
    minutes of audio before the order showed, too slow for the suite."""
    engine = HeldEngine()
    sched = scheduler(engine, max_batch_size=8, max_batch_tokens=800)
    cost = sched.max_batch_tokens // 8
    chunks = [f"recording chunk {i}" for i in range(40)]  # twenty minutes: five batches of eight
    engine.gate.clear()
    recording = asyncio.create_task(sched.submit(chunks, [cost] * 40, lane=lane_for(audio_by_size(seconds=1_200))))
    await wait_until_async(engine.started.is_set, timeout=10, message="the recording's first batch never started")
    note = asyncio.create_task(sched.submit(["voice note"], [cost], lane=lane_for(audio_by_size(seconds=45))))
    await wait_until_async(lambda: sched.queued_by_class()["interactive"] == 1, timeout=10)
    engine.gate.set()
    assert await note == ["voice note"] and await recording == chunks
    assert batch_of(engine, "voice note") == 1, engine.batches
    await sched.close()


def test_tenant_queue_serves_tenants_in_turn_and_keeps_each_ones_order() -> None:
    queue: TenantQueue[str] = TenantQueue()
    queue.push("a", ["a1", "a2", "a3"])
    queue.push("b", ["b1"])
    queue.push("a", ["a4"])
    queue.push("c", ["c1", "c2"])
    assert [queue.pop() for _ in range(len(queue))] == ["a1", "b1", "c1", "a2", "c2", "a3", "a4"]
    assert len(queue) == 0 and queue.tenants() == {}


def test_class_chooser_ages_batch_work() -> None:
    chooser = ClassChooser(share_every=100, max_wait_s=5.0)
    both = {"interactive": True, "batch": True}
    assert chooser.choose(both, batch_waited_s=1.0) == "interactive"
    assert [chooser.choose(both, batch_waited_s=60.0) for _ in range(6)] == ["batch", "interactive"] * 3, (
        "aged batch work takes every other turn, never all of them: a backlog older than the limit would starve "
        "interactive calls for as long as it lasted")
    assert chooser.choose({"batch": True}, batch_waited_s=0.0) == "batch"
    assert chooser.choose({}, batch_waited_s=0.0) is None


@pytest.mark.anyio
async def test_a_pick_whose_items_were_all_cancelled_does_not_use_up_the_batch_class_turn() -> None:
    """The batch class's turn comes (one batch in four), but its only item was cancelled: nothing of it
    runs, so its turn is still due, and the next batch item goes into the very next batch."""
    sched = scheduler(HeldEngine(), max_batch_size=1)
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[str]] = []

    def queue(lane: Lane, text: str, cancelled: bool = False) -> None:
        future: asyncio.Future[str] = loop.create_future()
        futures.append(future)
        if cancelled:
            future.cancel()
        sched._classes[lane.priority].push(lane.tenant, [Item(text, 1, future, None)])

    def next_payload() -> str:
        taken = sched._take_batch()
        assert taken is not None
        return taken[1][0].payload

    for i in range(10):
        queue(AGENT, f"q{i}")
    queue(BULK, "gone", cancelled=True)
    taken = [next_payload() for _ in range(4)]
    assert taken == ["q0", "q1", "q2", "q3"]  # the fourth pick was the batch class's, all cancelled: q3 ran
    queue(BULK, "doc")
    assert next_payload() == "doc"
    assert sched.queued_by_class() == {"interactive": 6, "batch": 0}
    for future in futures:
        future.cancel()  # nobody waits for them
    await sched.close()


class CoresEngine:
    """A CPU engine running one item per call on each of its cores: calls wait on `gate`; records the most
    calls at once and the order they started in."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.started: list[str] = []

    def run(self, payloads: list[str]) -> list[str]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.extend(payloads)
        self.gate.wait(10)
        with self.lock:
            self.running -= 1
        return payloads


@pytest.mark.anyio
async def test_an_engine_of_two_cores_runs_two_single_item_batches_at_once_and_no_more() -> None:
    engine = CoresEngine()
    sched = scheduler(engine, max_batch_size=1, concurrency=2, device_slots=threading.BoundedSemaphore(2))  # type: ignore[arg-type]
    texts = [f"s{i}" for i in range(6)]
    task = asyncio.create_task(sched.submit(texts, [1] * len(texts), lane=BULK))
    await wait_until_async(lambda: engine.running == 2, timeout=10, message="the second core never got work")
    await asyncio.sleep(0.05)  # a third call would start now if the scheduler let it
    assert engine.running == 2 and sched.running == 2
    engine.gate.set()
    assert await task == texts
    assert engine.most == 2
    await sched.close()


@pytest.mark.anyio
async def test_with_every_core_busy_an_interactive_sentence_takes_the_next_free_core() -> None:
    engine = CoresEngine()
    sched = scheduler(engine, max_batch_size=1, concurrency=2, device_slots=threading.BoundedSemaphore(2))  # type: ignore[arg-type]
    chapter = [f"s{i}" for i in range(8)]
    bulk = asyncio.create_task(sched.submit(chapter, [1] * len(chapter), lane=BULK))
    await wait_until_async(lambda: engine.running == 2, timeout=10)
    reply = asyncio.create_task(sched.submit(["reply"], [1], lane=AGENT))
    await wait_until_async(lambda: sched.queued_by_class()["interactive"] == 1, timeout=10)
    engine.gate.set()
    assert await reply == ["reply"] and await bulk == chapter
    assert engine.started.index("reply") == 2, engine.started  # right after the two that held the cores
    await sched.close()


def test_the_class_rule() -> None:
    assert by_size(items=1, tokens=12) == "interactive"
    assert by_size(items=20, tokens=7_800) == "batch"  # an OpenClaw memory indexing request
    assert by_size(items=2, tokens=600, input_type="document") == "batch"
    assert by_size(items=1, tokens=40, input_type="query") == "interactive"
    assert by_size(items=9, tokens=90) == "batch"
    assert speak_by_size(characters=200) == "interactive" and speak_by_size(characters=4_000) == "batch"
    assert speak_by_size(characters=1_000) == "interactive" and speak_by_size(characters=1_001) == "batch"
    assert capped("interactive", "batch") == "batch" and capped("batch", "interactive") == "batch"
    assert parse_priority(" Batch ") == "batch" and parse_priority(None) is None
    with pytest.raises(ValueError, match="interactive, batch"):
        parse_priority("urgent")
    assert parse_tenant(None) == "" and parse_tenant("team-a") == "team-a"
    with pytest.raises(ValueError, match="64 printable"):
        parse_tenant("x" * 65)
    # At each boundary, the last size that is interactive and one more. Embeddings and BERTScore (its pairs
    # are the items, both sides' tokens the tokens) share `by_size`; rerank counts documents, speech seconds.
    assert by_size(items=8, tokens=1_000) == "interactive"
    assert by_size(items=9, tokens=9) == "batch" and by_size(items=1, tokens=1_001) == "batch"
    assert by_size(items=20, tokens=4_000, input_type="query") == "interactive"  # a query may be long
    assert by_size(items=1, tokens=4_001, input_type="Query") == "batch"
    assert by_size(items=1, tokens=3, input_type="passage") == "batch"
    assert by_size(items=1, tokens=3, input_type="something else") == "interactive"
    assert estimate_tokens(["abcd", "abcde"]) == 3  # the bridge's count: four characters a token, rounded up
    assert rerank_by_size(documents=1) == "interactive" and rerank_by_size(documents=100) == "interactive"
    assert rerank_by_size(documents=101) == "batch"
    assert audio_by_size(seconds=60.0) == "interactive" and audio_by_size(seconds=60.5) == "batch"
    assert audio_by_size(seconds=3_600) == "batch"
    assert audio_by_size(seconds=estimate_audio_seconds(960_000)) == "interactive"  # a minute at 128 kbit/s
    assert audio_by_size(seconds=estimate_audio_seconds(960_001)) == "batch"
