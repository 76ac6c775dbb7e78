"""Abuse: oversized and malformed input, model names that try to escape, and key comparison timing.
Each case is refused with the right status while the service keeps serving everyone else."""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest

from gpu_protocol.auth import keys_match
from gpu_service.errors import ModelNotAllowed
from tests.support.reliability import record
from tests.support.services import ServiceProcess


class Bystander:
    """Another client that keeps using the service while an attack is running."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                self.results.append(http.post(f"{self.url}/embed", json={"texts": ["bystander"]}).status_code)
                time.sleep(0.05)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join(timeout=30)


ATTACKS = [
    ("a 50 MB body", lambda: b'{"texts": ["' + b"a" * (50 * 2**20) + b'"]}', 413, "GPU_MAX_BODY_BYTES"),
    ("100,000 texts", lambda: ('{"texts": [' + ",".join(['"t"'] * 100_000) + "]}").encode(), 413, "at most 4096"),
    ("a 10 MB single string", lambda: b'{"texts": ["' + b"b" * (10 * 2**20) + b'"]}', 422, "characters"),
    ("JSON nested 100,000 deep", lambda: b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    ("non-UTF-8 bytes", lambda: b'{"texts": ["\xff\xfe\xfa"]}', 400, "not valid JSON"),
]


@pytest.mark.parametrize("name, body, status, words", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_hostile_bodies_are_refused_and_others_keep_being_served(
    service: ServiceProcess, name: str, body, status: int, words: str
) -> None:
    payload = body()
    with Bystander(service.url) as bystander:
        started = time.perf_counter()
        r = httpx.post(f"{service.url}/embed", content=payload, headers={"content-type": "application/json"},
                       timeout=60)
        took = time.perf_counter() - started
    assert r.status_code == status, (name, r.status_code, r.text[:300])
    assert words in r.json()["detail"]
    assert bystander.results and all(code == 200 for code in bystander.results), bystander.results
    record("abuse", f"{name} to /embed", f"HTTP {r.status_code} in {took:.2f}s; "
           f"{len(bystander.results)} concurrent requests from another client all 200")


def test_model_names_are_refused_before_any_disk_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The allowlist and path checks run before resolution: resolution is made to explode."""
    import threading as th

    from gpu_service.models import registry as models
    from gpu_service.models import resolve
    from gpu_service.models.registry import ModelRegistry
    from gpu_service.settings import BatchLimits, Settings

    def explode(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolution (disk/network) was reached")

    monkeypatch.setattr(models, "resolve", explode)
    monkeypatch.setattr(resolve, "_cached_snapshot", explode)
    registry = ModelRegistry(Settings(), {}, batch=BatchLimits(16_384, 64, 64), device_slots=th.BoundedSemaphore(1),
                             memory_budget_bytes=None)
    names = ["../../etc/passwd", "/etc/passwd", "~/.ssh/id_rsa", "./model", "C:\\models\\x",
             "org/model/../../x", "microsoft/phi-3-with-remote-code", "evil/trust-remote-code-model"]
    for name in names:
        with pytest.raises(ModelNotAllowed):
            registry.key("embed", name)
    record("abuse", "model names outside the allowlist, ../ and absolute paths, remote-code hub models",
           f"{len(names)} names refused with 403 before resolution (no disk, no network)")


def test_key_comparison_has_no_early_exit() -> None:
    """A naive `==` returns sooner the earlier the first wrong byte is; ours takes the same time."""
    key = "k" * 200_000
    wrong_first = ("x" + key[1:]).encode()
    wrong_last = (key[:-1] + "x").encode()

    def median_time(given: bytes) -> float:
        times = []
        for _ in range(300):
            start = time.perf_counter()
            keys_match(key, given)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    keys_match(key, wrong_first)
    first, last = median_time(wrong_first), median_time(wrong_last)
    naive_first = min(timeit_naive(key, "x" + key[1:]) for _ in range(5))
    naive_last = min(timeit_naive(key, key[:-1] + "x") for _ in range(5))
    ratio = first / last
    record("abuse", "API key comparison timing (200 KB key, wrong first vs wrong last byte)",
           f"ours: ratio {ratio:.2f} (1.00 = no early exit); naive ==: ratio {naive_first / naive_last:.2f}")
    assert 0.5 < ratio < 2.0  # a naive comparison would be near 0.01 here
    assert not keys_match(key, wrong_first) and not keys_match(key, wrong_last) and keys_match(key, key.encode())


def timeit_naive(a: str, b: str) -> float:
    start = time.perf_counter()
    for _ in range(200):
        _ = a == b
    return time.perf_counter() - start
