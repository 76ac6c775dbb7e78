"""The batch scheduler and the model registry, with fake engines (fast, no weights).

Out-of-memory is simulated by a fake engine that raises the same error a GPU would;
there is no GPU here to run out of memory for real.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_service.errors import DeadlineExceeded, ModelLoadFailed, ModelNotAllowed, Overloaded
from gpu_service.models.registry import ModelRegistry
from gpu_service.models.resolve import ModelPolicy
from gpu_service.scheduling.batching import BatchScheduler, DeviceOutOfMemory
from gpu_service.scheduling.jobs import Job
from gpu_service.settings import BatchLimits, Settings
from tests.support.waiting import wait_until_async

BATCHES = BatchLimits(max_tokens=16_384, max_size=64, overhead_tokens=64)


def make_scheduler(run, **kw) -> BatchScheduler:
    options = dict(max_batch_tokens=64, max_batch_size=8, max_queue=1000, window_s=0.002,
                   device_slots=threading.BoundedSemaphore(1))
    options.update(kw)
    return BatchScheduler("fake", run, **options)


def echo_run(batches: list[list[str]] | None = None):
    def run(payloads: list[str]) -> list[str]:
        if batches is not None:
            batches.append(list(payloads))
        return [p.upper() for p in payloads]

    return run


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(1, 30), min_size=1, max_size=40), min_size=1, max_size=12))
def test_results_match_inputs_under_concurrency(request_sizes: list[list[int]]) -> None:
    """Random concurrent requests of random lengths: each gets exactly its own results, in order."""

    async def scenario() -> None:
        batches: list[list[str]] = []
        sched = make_scheduler(echo_run(batches))
        requests = [[f"r{r}-i{i}-" + "x" * n for i, n in enumerate(sizes)] for r, sizes in enumerate(request_sizes)]
        results = await asyncio.gather(
            *(sched.submit(texts, [len(t) for t in texts]) for texts in requests)
        )
        for texts, got in zip(requests, results, strict=True):
            assert got == [t.upper() for t in texts]
        for batch in batches:  # the padded cost never exceeds the budget (unless one item alone does)
            assert len(batch) == 1 or max(map(len, batch)) * len(batch) <= 64
            assert len(batch) <= 8
        await sched.close()

    asyncio.run(scenario())


@pytest.mark.anyio
async def test_concurrent_requests_share_batches() -> None:
    batches: list[list[str]] = []
    sched = make_scheduler(echo_run(batches), max_batch_tokens=10_000, max_batch_size=64, window_s=0.01)
    await asyncio.gather(*(sched.submit([f"t{i}"], [2]) for i in range(20)))
    assert sum(len(b) for b in batches) == 20
    assert len(batches) < 20, "concurrent single-text requests should share batches"
    await sched.close()


@pytest.mark.anyio
async def test_big_request_is_split_and_reports_progress() -> None:
    batches: list[list[str]] = []
    seen_progress: list[int] = []
    job = Job(kind="embed", model="fake", total=100)

    def run(payloads: list[str]) -> list[str]:
        seen_progress.append(job.done)
        batches.append(payloads)
        return payloads

    sched = make_scheduler(run, max_batch_tokens=40, max_batch_size=100, max_queue=10)
    texts = [f"{i:04d}" for i in range(100)]  # 100 items > max_queue 10: still admitted on an empty queue
    out = await sched.submit(texts, [4] * 100, job=job)
    assert out == texts
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert seen_progress == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert job.done == 100
    await sched.close()


@pytest.mark.anyio
async def test_queue_full_answers_overloaded_with_retry_after() -> None:
    release = threading.Event()
    running: list[list[str]] = []

    def slow(payloads: list[str]) -> list[str]:
        running.append(payloads)
        release.wait(5)
        return payloads

    sched = make_scheduler(slow, max_queue=4, window_s=0)
    first = asyncio.create_task(sched.submit(["a"], [1]))
    await wait_until_async(lambda: running == [["a"]] and sched.queued == 0,
                           message='"a" should be running with the queue empty again')
    queued = asyncio.create_task(sched.submit(["b", "c", "d"], [1, 1, 1]))
    await wait_until_async(lambda: sched.queued == 3, message='"b", "c", "d" should wait in the queue')
    with pytest.raises(Overloaded) as err:
        await sched.submit(["e", "f"], [1, 1])
    assert err.value.retry_after_s is not None and err.value.retry_after_s >= 1
    assert "GPU_MAX_QUEUE=4" in err.value.detail
    release.set()
    assert await first == ["a"] and await queued == ["b", "c", "d"]
    await sched.close()


@pytest.mark.anyio
async def test_out_of_memory_splits_the_batch() -> None:
    """Simulated: batches over 2 items 'run out of memory' like a small GPU would."""
    sizes: list[int] = []

    class FakeOOM(RuntimeError):
        pass

    def run(payloads: list[str]) -> list[str]:
        sizes.append(len(payloads))
        if len(payloads) > 2:
            raise FakeOOM("CUDA out of memory. Tried to allocate 2.00 GiB")
        return payloads

    freed = []
    sched = make_scheduler(run, max_batch_size=8, max_batch_tokens=1000,
                           is_oom=lambda e: isinstance(e, FakeOOM), after_oom=lambda: freed.append(1))
    texts = [str(i) for i in range(8)]
    assert await sched.submit(texts, [1] * 8) == texts
    assert sizes[0] == 8 and max(sizes[1:]) <= 4 and sched.stats.oom_splits >= 3
    assert freed, "cached device memory is released after an OOM"
    await sched.close()


@pytest.mark.anyio
async def test_single_item_oom_fails_cleanly_and_scheduler_survives() -> None:
    def run(payloads: list[str]) -> list[str]:
        if "huge" in payloads:
            raise RuntimeError("CUDA out of memory")
        return payloads

    sched = make_scheduler(run, is_oom=lambda e: "out of memory" in str(e))
    with pytest.raises(DeviceOutOfMemory, match="single input"):
        await sched.submit(["huge"], [1])
    assert await sched.submit(["fine"], [1]) == ["fine"]
    await sched.close()


@pytest.mark.anyio
async def test_deadline_cancels_unstarted_work() -> None:
    ran: list[str] = []
    gate = threading.Event()

    def run(payloads: list[str]) -> list[str]:
        gate.wait(2)
        ran.extend(payloads)
        return payloads

    sched = make_scheduler(run, max_batch_size=1, window_s=0)
    with pytest.raises(DeadlineExceeded, match="cancelled"):
        await sched.submit(["a", "b", "c", "d"], [1] * 4, deadline=time.monotonic() + 0.1)
    gate.set()
    assert await sched.submit(["z"], [1]) == ["z"]
    assert "c" not in ran and "d" not in ran, "work not yet started when the deadline passed must not run"
    await sched.close()


# --------------------------------------------------------------------------- registry


class FakeEngine:
    loads = 0

    def __init__(self, name: str, size: int, fail: bool = False, delay: float = 0.05) -> None:
        time.sleep(delay)
        if fail:
            raise OSError(f"{name}: config.json is broken")
        FakeEngine.loads += 1
        self.name = name
        self.memory_bytes = size
        self.padded = True
        self.concurrency = 1
        self.closed = False

    def run(self, batch: list[str]) -> list[str]:
        return batch

    def close(self) -> None:
        self.closed = True


def registry(tmp_path: Path, budget: int | None = None, fail: set[str] | None = None, **kw) -> ModelRegistry:
    settings = Settings(allowed_models=["*"], model_load_timeout_s=kw.pop("timeout", 5.0), **kw)
    fail = fail or set()
    factory = lambda key, resolved: FakeEngine(key.name, 100, fail=key.name in fail)  # noqa: E731
    reg = ModelRegistry(settings, {"embed": factory}, device_slots=threading.BoundedSemaphore(1),
                        memory_budget_bytes=budget, batch=BATCHES)
    return reg


@pytest.fixture(autouse=False)
def fake_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_service.models import registry as models
    from gpu_service.models.resolve import ResolvedModel

    monkeypatch.setattr(models, "resolve", lambda name, settings: ResolvedModel(name, name, "directory"))


@pytest.mark.anyio
async def test_concurrent_first_requests_load_once(tmp_path: Path, fake_resolve: None) -> None:
    FakeEngine.loads = 0
    reg = registry(tmp_path)
    key = reg.key("embed", "org/model-a")

    async def use() -> int:
        async with reg.use(key) as model:
            return id(model)

    ids = await asyncio.gather(*(use() for _ in range(10)))
    assert FakeEngine.loads == 1 and len(set(ids)) == 1
    await reg.close()


@pytest.mark.anyio
async def test_load_failure_reaches_every_waiter_and_is_not_cached(tmp_path: Path, fake_resolve: None) -> None:
    reg = registry(tmp_path, fail={"org/broken"})
    key = reg.key("embed", "org/broken")

    async def use() -> None:
        async with reg.use(key):
            pass

    results = await asyncio.gather(*(use() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ModelLoadFailed) for r in results)
    assert "org/broken" in str(results[0]) and "config.json is broken" in str(results[0])
    assert reg.loaded() == [], "a failed load registers no model"
    with pytest.raises(ModelLoadFailed):  # tried again, not served from a cache of failures
        await use()
    await reg.close()


@pytest.mark.anyio
async def test_lru_eviction_spares_defaults_and_models_in_use(tmp_path: Path, fake_resolve: None) -> None:
    reg = registry(tmp_path, budget=250)  # room for two 100-byte models
    default, a, b, c = (reg.key("embed", n) for n in ("org/default", "org/a", "org/b", "org/c"))
    await reg.warm(default)
    async with reg.use(a):
        pass
    async with reg.use(b):  # over budget: a (idle, least recently used) goes
        names = {m.key.name for m in reg.loaded()}
        assert names == {"org/default", "org/b"}
        async with reg.use(c):  # b is in use and default is pinned: nothing evictable, both stay
            assert {m.key.name for m in reg.loaded()} == {"org/default", "org/b", "org/c"}
    assert reg.evictions == 1
    await reg.close()


@pytest.mark.anyio
async def test_slow_load_times_out_for_waiters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_service.models import registry as models
    from gpu_service.models.resolve import ResolvedModel

    monkeypatch.setattr(models, "resolve", lambda name, settings: ResolvedModel(name, name, "directory"))
    settings = Settings(allowed_models=["*"], model_load_timeout_s=0.2)
    reg = ModelRegistry(settings, {"embed": lambda k, r: FakeEngine(k.name, 1, delay=1.0)},
                        device_slots=threading.BoundedSemaphore(1), memory_budget_bytes=None, batch=BATCHES)
    with pytest.raises(DeadlineExceeded, match="still loading"):
        async with reg.use(reg.key("embed", "org/slow")):
            pass
    # The load goes on for later callers after this waiter gave up; let it finish before closing.
    await wait_until_async(lambda: {m.key.name for m in reg.loaded()} == {"org/slow"}, timeout=30,
                           message="the slow load should still complete after its waiter timed out")
    await reg.close()


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "/etc/passwd", "~/models/x", "a/b/c", "C:\\models\\x", "./local", "x/../../y", "bad name!"],
)
def test_policy_refuses_paths_and_odd_names(name: str) -> None:
    with pytest.raises(ModelNotAllowed):
        ModelPolicy(Settings()).check(name)


def test_policy_allowlist_and_model_dirs(tmp_path: Path) -> None:
    (tmp_path / "my-model").mkdir()
    policy = ModelPolicy(Settings(allowed_models=["org/ok"], model_dirs=[str(tmp_path)]))
    policy.check("org/ok")
    policy.check("all-MiniLM-L6-v2")  # the configured default is always allowed
    policy.check(str(tmp_path / "my-model"))  # a path inside an allowed directory
    policy.check("my-model")  # a folder name inside an allowed directory
    with pytest.raises(ModelNotAllowed, match="ALLOWED_MODELS"):
        policy.check("org/other")
    with pytest.raises(ModelNotAllowed, match="GPU_MODEL_DIRS"):
        policy.check(str(tmp_path.parent / "elsewhere"))
