"""Ray Serve (issue 15): the service as a Serve deployment on a real local Ray cluster, CPU replicas.

Marked `ray`: they run with `make soak` (or GPU_BRIDGE_RAY=1), not in `make test` (a Ray cluster and
its replicas cost about 2.5 minutes of a 2-core machine), and skip if the `ray` extra is not installed.
Every test has a hard time limit (SIGALRM: a hung cluster fails the test instead of the run), and
the cluster is always shut down. Ray's node address is 127.0.0.1; its proxy listens there on a free port.

Each replica gets half a logical CPU and one torch thread (GPU_CPU_THREADS=1): two replicas and
the test itself share the machine's two cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest

# Single-machine mode: Ray's node address is 127.0.0.1, so its GCS, raylet, agents and workers listen on
# loopback. It is read when Ray is first imported, hence here. (Ray 2.60 still opens each Serve replica's
# inter-deployment gRPC server on [::]:0, hard-coded in ray/serve/_private/replica.py.)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install -e './service[ray]')")

import ray  # noqa: E402
from ray import serve  # noqa: E402

from mcp_bridge.embedded import free_port  # noqa: E402
from tests.support.reliability import record  # noqa: E402
from tests.support.waiting import wait_for_value, wait_until, wait_until_async  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLUSTER_LIMIT_S = 120
REPLICA_ENV = {"GPU_CPU_THREADS": "1"}
REPLICA_OPTIONS: dict[str, Any] = {"num_cpus": 0.5, "runtime_env": {"env_vars": REPLICA_ENV}}
TEXTS = ["Ray Serve spreads requests over replicas.", "a cat", "Kubernetes restarts pods that fail their probes.",
         "embeddings " * 40]


@contextmanager
def hard_limit(seconds: int, what: str) -> Iterator[None]:
    """Fail (not hang) if the block runs past `seconds`: SIGALRM raises in the main thread."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} ran past its hard limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def sigterm_interrupts(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def proxy_url() -> Iterator[str]:
    """A local Ray cluster with Serve's HTTP proxy on 127.0.0.1; shut down (raylets included) at the end."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with hard_limit(CLUSTER_LIMIT_S, "starting Ray"):
            ray.init(num_cpus=4, resources={"replica_slot": 2}, include_dashboard=False,
                     object_store_memory=100 * 2**20, _temp_dir=temp_dir, log_to_driver=False)
            serve.start(http_options={"host": "127.0.0.1", "port": port})
        # A SIGTERM to the test run (e.g. `timeout`) interrupts it like Ctrl-C, so the finalizer below
        # still shuts the cluster down (set after ray.init, which installs a handler of its own).
        signal.signal(signal.SIGTERM, sigterm_interrupts)
        yield f"http://127.0.0.1:{port}"
    finally:
        with hard_limit(CLUSTER_LIMIT_S, "stopping Ray"):
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
                shutil.rmtree(temp_dir, ignore_errors=True)
                signal.signal(signal.SIGTERM, previous_sigterm)


@pytest.fixture
def deploy(proxy_url: str) -> Iterator[Callable[..., str]]:
    """Deploy the service as application `gpu` on route `/`; deleted at the end of the test."""
    from gpu_service.ray_app import GpuService

    def run(replicas: int | None = 2, env: dict[str, str] | None = None, blocking: bool = True,
            actor: dict[str, Any] | None = None, **options: Any) -> str:
        actor_options = {**REPLICA_OPTIONS, **(actor or {}),
                         "runtime_env": {"env_vars": {**REPLICA_ENV, **(env or {})}}}
        if replicas is not None:
            options.update(num_replicas=replicas, autoscaling_config=None)
        deployment = GpuService.options(ray_actor_options=actor_options, health_check_period_s=1, **options)
        if blocking:
            serve.run(deployment.bind(), name="gpu", route_prefix="/")
        else:  # returns once deployed, without waiting for the replicas (Ray 2.60's own non-blocking run)
            serve._run(deployment.bind(), name="gpu", route_prefix="/", _blocking=False)
        return proxy_url

    yield run
    with hard_limit(60, "deleting the application"):
        serve.delete("gpu")


def replica_states() -> Counter[str]:
    application = serve.status().applications.get("gpu")
    if application is None:
        return Counter()
    [deployment] = application.deployments.values()
    return Counter({str(getattr(state, "value", state)): count for state, count in deployment.replica_states.items()})


def wait_for(condition: Callable[[], bool], what: str, seconds: float) -> None:
    wait_until(condition, timeout=seconds, interval=0.5, message=f"not within {seconds:.0f} s: {what}")


def health(url: str) -> httpx.Response | None:
    """The app's /health through the proxy; None while no replica answers (route unknown, queued)."""
    try:
        response = httpx.get(f"{url}/health", timeout=3)
    except httpx.HTTPError:
        return None
    return response if response.headers.get("x-replica") else None


def health_code(url: str) -> int | None:
    response = health(url)
    return None if response is None else response.status_code


def first_replica_answer(url: str, seconds: float) -> httpx.Response:
    return wait_for_value(lambda: health(url), timeout=seconds, interval=0.5,
                          message=f"no replica answered /health through the proxy within {seconds:.0f} s")


class Load:
    """Clients posting /embed through the proxy in a loop until stopped; every outcome is kept."""

    def __init__(self, url: str, clients: int = 6) -> None:
        self.url = url
        self.outcomes: list[str] = []
        self.replicas: set[str] = set()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, index: int) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop_event.is_set():
                try:
                    response = http.post(f"{self.url}/embed", json={"texts": [f"client {index} text", *TEXTS[:3]]})
                    self.outcomes.append(str(response.status_code))
                    if response.status_code == 200:
                        self.replicas.add(response.headers["x-replica"])
                    else:
                        time.sleep(0.1)
                except httpx.TimeoutException:
                    self.outcomes.append("timeout")
                except httpx.HTTPError as exc:
                    self.outcomes.append(type(exc).__name__)
                    time.sleep(0.2)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=40)
        assert not any(thread.is_alive() for thread in self.threads), "a client hung past its 30 s timeout"

    def count(self) -> int:
        return len(self.outcomes)


def test_health_through_the_proxy_is_200_only_once_both_replicas_run(deploy: Callable[..., str]) -> None:
    """Two replicas, room for one: the replica that runs answers 503 "starting" for the deployment
    (a plain `serve.ingress(create_app())` would answer 200 from it); once the second can be placed
    and runs, 200 "ok"."""
    @ray.remote(num_cpus=0, resources={"replica_slot": 1})
    class SlotHolder:
        def ready(self) -> bool:
            return True

    with hard_limit(150, "test 1"):
        holder = SlotHolder.remote()  # type: ignore[attr-defined]
        assert ray.get(holder.ready.remote(), timeout=30)
        url = deploy(replicas=2, blocking=False, actor={"resources": {"replica_slot": 1}})
        first = first_replica_answer(url, 90)
        assert first.status_code == 503, first.text
        assert first.json()["status"] == "starting" and "1 of 2 replicas running" in first.json()["problems"][0]
        assert replica_states()["RUNNING"] == 1

        ray.kill(holder)  # the second replica can be placed now
        wait_for(lambda: health_code(url) == 200, "/health 200", 90)
        # Replicas only go from starting to running here, so a 200 means both ran when it was sent.
        assert replica_states()["RUNNING"] == 2
        # From then on both say so (each after at most its 1 s cache of Ray's status).
        said_ok: set[str] = set()

        def both_replicas_say_ok() -> bool:
            response = health(url)
            if response is not None and response.json() == {"status": "ok", "device": "cpu", "problems": []}:
                said_ok.add(response.headers["x-replica"])
            return len(said_ok) == 2

        wait_for(both_replicas_say_ok, "both replicas answering /health 200 ok", 30)


@pytest.fixture
def two_replicas(deploy: Callable[..., str]) -> str:
    with hard_limit(120, "deploying two replicas"):
        return deploy(replicas=2)


def test_embeddings_through_the_proxy_equal_a_plain_service(two_replicas: str, service) -> None:  # type: ignore[no-untyped-def]
    with hard_limit(60, "test 2"):
        for path, body in (("/embed", {"texts": TEXTS}), ("/v1/embeddings", {"input": TEXTS})):
            through_ray = httpx.post(f"{two_replicas}{path}", json=body, timeout=30)
            direct = httpx.post(f"{service.url}{path}", json=body, timeout=30)
            assert through_ray.status_code == direct.status_code == 200, through_ray.text
            ray_vectors, direct_vectors = (
                np.asarray(r.json()["embeddings"] if path == "/embed" else [d["embedding"] for d in r.json()["data"]])
                for r in (through_ray, direct))
            # Same model, same request, but the replicas run torch on 1 thread and the plain service on
            # all cores: float sums may round differently in the last bits, so compare with a tolerance.
            np.testing.assert_allclose(ray_vectors, direct_vectors, atol=1e-5)


def test_both_replicas_answer_with_their_own_identity(two_replicas: str) -> None:
    with hard_limit(60, "test 3"):
        seen: Counter[str] = Counter()
        with httpx.Client(timeout=10) as http:
            for _ in range(100):
                response = http.get(f"{two_replicas}/info")
                assert response.status_code == 200 and response.json()["device"] == "cpu"
                seen[response.headers["x-replica"]] += 1
                if len(seen) == 2:
                    break
        assert len(seen) == 2, f"100 requests all went to {set(seen)}"


def test_autoscaling_from_one_to_two_replicas_under_load_and_back(deploy: Callable[..., str]) -> None:
    with hard_limit(240, "test 5"):
        url = deploy(replicas=None, max_ongoing_requests=16, autoscaling_config={
            "min_replicas": 1, "max_replicas": 2, "initial_replicas": 1, "target_ongoing_requests": 2,
            "upscale_delay_s": 0, "downscale_delay_s": 3, "metrics_interval_s": 0.5, "look_back_period_s": 2})
        assert replica_states()["RUNNING"] == 1
        with Load(url) as load:
            wait_for(lambda: replica_states()["RUNNING"] == 2, "a second replica under load", 120)
            served = load.count()
            wait_for(lambda: load.count() > served + 12, "requests served with two replicas", 30)
        wait_for(lambda: replica_states() == Counter({"RUNNING": 1}), "back to one replica without load", 90)
        assert set(load.outcomes) == {"200"}, Counter(load.outcomes)


def test_shutdown_under_load_finishes_in_flight_requests(two_replicas: str) -> None:
    """Scaling 2 -> 1 under load loses nothing (Ray stops routing to the stopping replica and lets it
    finish); deleting the application under load leaves no client hanging."""
    from gpu_service.ray_app import GpuService

    with hard_limit(180, "test 6"):
        with Load(two_replicas) as load:
            wait_for(lambda: len(load.replicas) == 2, "load reaching both replicas", 60)
            serve.run(GpuService.options(num_replicas=1, autoscaling_config=None, health_check_period_s=1,
                                         ray_actor_options=REPLICA_OPTIONS).bind(), name="gpu", route_prefix="/")
            wait_for(lambda: replica_states() == Counter({"RUNNING": 1}), "one replica left", 90)
            served = load.count()
            wait_for(lambda: load.count() > served + 12, "requests served after the scale-down", 30)
            assert set(load.outcomes) == {"200"}, Counter(load.outcomes)
            before_delete = load.count()
            serve.delete("gpu")  # blocks until the replica is gone: its in-flight requests finished first
        after = Counter(load.outcomes[before_delete:])
        assert "timeout" not in after and "500" not in after, after


def test_a_model_that_cannot_load_fails_the_deployment(deploy: Callable[..., str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-embedder"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with hard_limit(150, "test 7"):
        with pytest.raises(RuntimeError):
            deploy(replicas=1, env={"MODEL_EMBED": str(broken)}, max_constructor_retry_count=1)
        application = serve.status().applications["gpu"]
        assert str(application.status.value) == "DEPLOY_FAILED", application
        [deployment] = application.deployments.values()
        assert f"MODEL_EMBED={str(broken)!r} is not loaded" in deployment.message, deployment.message


def replica_actor_names() -> list[str]:
    """The Ray actors behind the `gpu` application's replicas (Serve names them SERVE_REPLICA::...)."""
    return [actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["name"].startswith("SERVE_REPLICA::gpu#")]


def test_the_bridge_loses_no_call_when_a_replica_dies(two_replicas: str) -> None:
    """The bridge with the Serve proxy as its only host (`cluster: true`), 200 concurrent tool calls,
    one replica actor killed while they run: every call succeeds with its own vector, Ray has two
    replicas running again within 60 s, and the bridge's host is back in normal use.

    The requests in flight on the killed replica fail at the proxy (HTTP 500) all at once: the
    bridge retries them on the same URL, where Ray routes them to the replica that lives. So
    many failures in a row may eject the host for a moment; as the only host it is still tried
    (panic mode), and its next passing health probe ends the ejection. A request the proxy had handed to the
    replica may instead stay unanswered at the proxy (2 of 5 runs without hedging timed out one call at the
    45 s deadline): with hedging on, a copy goes through the proxy again past the host's p95."""
    import anyio
    from mcp import Client

    from mcp_bridge.bridge import Bridge
    from mcp_bridge.config import parse_config
    from mcp_bridge.mcp.server import build_server

    calls = 200
    texts = [f"call {i}: a replica may die under me {i % 13}" for i in range(calls)]
    config = {"hosts": [{"name": "ray", "url": two_replicas, "cluster": True}], "healthCheckIntervalSeconds": 1,
              "hedging": True}  # as the README advises for Ray: a request a dying replica holds may never answer
    [victim, *_] = replica_actor_names()

    def replaced() -> bool:
        return replica_states()["RUNNING"] == 2 and victim not in replica_actor_names()

    async def run() -> None:
        async with Bridge(parse_config(config, "t")) as bridge, Client(build_server(bridge)) as client:
            reference = (await client.call_tool("gpu_embed", {"texts": texts})).structured_content["embeddings"]
            results: list[list[float]] = [[] for _ in range(calls)]
            done = 0

            async def one(i: int) -> None:
                nonlocal done
                result = await client.call_tool("gpu_embed", {"texts": [texts[i]]})
                assert not result.is_error, f"call {i} failed: {result.content[0].text}"
                results[i] = result.structured_content["embeddings"][0]
                done += 1

            async with anyio.create_task_group() as calls_in_flight:
                for i in range(calls):
                    calls_in_flight.start_soon(one, i)
                while done < calls // 10:  # the load runs on both replicas: now kill one
                    await anyio.sleep(0.05)
                assert done < calls, "every call finished before the kill"
                ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
                killed_at = time.monotonic()
            for i, (got, want) in enumerate(zip(results, reference, strict=True)):
                np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"call {i} got another text's vector")
            [host] = (await client.call_tool("gpu_status", {})).structured_content["hosts"]
            assert host["failed"] > 0, f"the kill never reached the bridge, so this proved nothing: {host}"

            await wait_until_async(lambda: anyio.to_thread.run_sync(replaced),
                                   timeout=killed_at + 60 - time.monotonic(), interval=0.5,
                                   message=lambda: f"not two replicas 60 s after the kill: {replica_states()}")
            record("fault", "kill one of 2 Ray Serve replicas under 200 concurrent tool calls (proxy as one "
                   "cluster host)", f"0 failed calls ({host['failed']} requests failed at the proxy and were "
                   f"retried); two replicas again {time.monotonic() - killed_at:.1f}s after the kill")
            await wait_until_async(lambda: bridge.pool.snapshot().hosts[0].state == "healthy",
                                   timeout=killed_at + 90 - time.monotonic(), interval=0.5,
                                   message=lambda: f"the host is still {bridge.pool.snapshot().hosts[0]}")
            after = await client.call_tool("gpu_embed", {"texts": texts[:8]})
            assert not after.is_error and len(after.structured_content["embeddings"]) == 8

    with hard_limit(240, "test 4"):
        anyio.run(run)
