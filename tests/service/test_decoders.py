"""The audio decoder processes persist across files, and every guarantee of a process per file holds:
a worker that hangs is killed at the time limit, one that dies mid-file is a 422 for that file only,
one killed while idle is replaced, each is retired after its quota of files, and the service's
shutdown stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from gpu_protocol.transcribe import TRANSCRIPTIONS
from gpu_service.errors import Unprocessable
from gpu_service.tasks.transcribe.decode import Decoders
from gpu_service.tasks.transcribe.decoders import DecoderPool
from tests.support.services import ServiceProcess
from tests.support.speech_support import FOX, SPEECH_ENV, encode, speak
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # decoder processes, espeak-ng, ffmpeg, a service process


@pytest.fixture(scope="module")
def fox(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return encode(speak(FOX, tmp_path_factory.mktemp("decoders") / "fox.wav"), ".ogg").read_bytes()


DECODERS: list[Decoders] = []
"""The decoders `samples` uses: the `pool` fixture's while a test has one."""


@pytest.fixture
def pool() -> Iterator[DecoderPool]:
    """One worker, retired after 3 files, behind `samples` for this test."""
    pool = DecoderPool(size=1, recycle_after=3)
    DECODERS.append(Decoders(pool))
    yield pool
    DECODERS.pop().close()


def samples(data: bytes, timeout_s: float = 30.0) -> np.ndarray:
    return asyncio.run(DECODERS[-1].decode(data, filename="fox.ogg", max_seconds=60, timeout_s=timeout_s))


def assert_fox(audio: np.ndarray) -> None:
    assert 2.0 < audio.shape[0] / 16_000 < 6.0 and float(abs(audio).max()) > 0.05


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z ...), None when it no longer exists (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def exited(pid: int) -> bool:
    """Our child `pid` has exited and waits to be reaped (checked without reaping it). Not the
    "Z" in /proc/<pid>/stat: that shows while the process's other threads are still dying."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def test_files_reuse_the_same_worker_processes(fox: bytes) -> None:
    service = Decoders()  # what the speech service builds: one worker per CPU
    DECODERS.append(service)
    try:
        for _ in range(4):
            assert_fox(samples(fox))
        assert service.pool.started <= 1  # at most one start for 4 files
    finally:
        DECODERS.pop().close()
    two = DecoderPool(size=2)
    try:
        first = two.decode(fox, 60, 30)
        pids = two.pids()
        for _ in range(5):
            assert two.decode(fox, 60, 30) == first
        assert two.pids() == pids and two.started == 1
        with ThreadPoolExecutor(6) as callers:
            answers = list(callers.map(lambda _: two.decode(fox, 60, 30), range(12)))
        assert all(answer == first for answer in answers)
        assert two.started <= 2 and len(two.pids()) <= 2 and set(pids) <= set(two.pids())
    finally:
        two.close()


def test_a_hung_worker_is_killed_at_the_time_limit_and_replaced(pool: DecoderPool, fox: bytes) -> None:
    assert_fox(samples(fox))
    [hung] = pool.pids()
    os.kill(hung, signal.SIGSTOP)  # a decoder stuck on a file: it never answers
    with pytest.raises(Unprocessable, match=r"within 1s \(GPU_DECODE_TIMEOUT\)"):
        samples(fox, timeout_s=1.0)
    assert state(hung) is None  # killed and reaped
    assert_fox(samples(fox))
    assert pool.pids() != [hung] and pool.started == 2


def test_a_worker_that_dies_mid_file_is_a_422_for_that_file(pool: DecoderPool, fox: bytes) -> None:
    assert_fox(samples(fox))
    [worker] = pool.pids()
    os.kill(worker, signal.SIGSTOP)
    errors: list[Exception] = []
    caller = threading.Thread(target=lambda: errors.append(pytest.raises(Unprocessable, samples, fox).value))
    caller.start()
    wait_until(lambda: pool.busy() == 1, message="the file never reached the worker")
    os.kill(worker, signal.SIGKILL)
    caller.join(30)
    assert "crashed the audio decoder (exit status -9)" in str(errors[0])
    assert state(worker) is None
    assert_fox(samples(fox))


def test_a_worker_killed_while_idle_is_replaced(pool: DecoderPool, fox: bytes) -> None:
    assert_fox(samples(fox))
    [killed] = pool.pids()
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: exited(killed), message="the killed worker never exited")
    assert_fox(samples(fox))  # not a 422: the dead worker is noticed before the file is sent
    assert state(killed) is None and pool.pids() != [killed] and pool.started == 2


def test_a_worker_is_retired_after_its_quota_of_files(pool: DecoderPool, fox: bytes) -> None:
    seen = []
    for _ in range(7):
        assert_fox(samples(fox))
        seen.append(pool.pids())
    assert pool.started == 3  # 3 files, 3 files, 1 file
    assert [len(pids) for pids in seen] == [1, 1, 0, 1, 1, 0, 1]  # retired as its third file is answered
    assert seen[0] == seen[1] != seen[3] == seen[4] != seen[6]
    assert state(seen[0][0]) is None and state(seen[3][0]) is None


def test_close_stops_the_workers_and_the_pool_starts_new_ones(pool: DecoderPool, fox: bytes) -> None:
    assert_fox(samples(fox))
    [worker] = pool.pids()
    pool.close()
    assert pool.pids() == [] and state(worker) is None
    assert_fox(samples(fox))
    assert pool.started == 2


def worker_pids(service_pid: int) -> set[int]:
    children: set[int] = set()
    for task in os.listdir(f"/proc/{service_pid}/task"):
        with open(f"/proc/{service_pid}/task/{task}/children") as listed:
            children.update(int(pid) for pid in listed.read().split())
    return {pid for pid in children if b"decode_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def test_the_service_keeps_its_decoders_and_stops_them_on_shutdown(fox: bytes) -> None:
    svc = ServiceProcess(env=SPEECH_ENV).start()
    assert svc.process is not None
    workers: set[int] = set()

    def post() -> httpx.Response:
        return httpx.post(f"{svc.url}{TRANSCRIPTIONS}", files={"file": ("fox.ogg", fox)}, timeout=120)

    try:
        assert post().status_code == 200
        workers = worker_pids(svc.process.pid)
        for _ in range(3):
            assert post().status_code == 200
        assert worker_pids(svc.process.pid) == workers and len(workers) == 1
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # a stopped worker would not exit by itself: only the shutdown kills it
        svc.stop()
        wait_until(lambda: all(state(pid) is None for pid in workers), message="decoder processes outlived the service")
    finally:
        svc.stop()
        for pid in workers:
            if state(pid) is not None:
                os.kill(pid, signal.SIGKILL)
