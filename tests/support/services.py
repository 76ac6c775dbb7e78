"""`gpu-service` processes on loopback ports, running the same `gpu_service` main a user runs (so kill -9,
SIGSTOP and restarts are real), always stopped. Each is forked from a warm zygote that has done the heavy imports
once (service_zygote.py), or started as its own `python -m gpu_service` when its environment asks for that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gpu_protocol.capabilities import TaskModels
from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION
from gpu_service.settings import FALSE_WORDS, TRUE_WORDS
from mcp_bridge.embedded import die_with_parent, free_port
from tests.support import ROOT
from tests.support.service_zygote import ForkedProcess, zygote
from tests.support.waiting import wait_until

TINY_RERANKER = "tiny-reranker"
"""The folder name (and so the model name) of bench/tiny_reranker.py's cross-encoder in the tests' models folders."""


def tiny_reranker_models(root: Path) -> dict[str, str]:
    """Build the tiny cross-encoder into `root`/tiny-reranker; the environment of a service that serves it as
    its default reranker (MODEL_RERANK), named by folder."""
    from bench.tiny_reranker import build_tiny_reranker

    build_tiny_reranker(root / TINY_RERANKER)
    return {"GPU_MODEL_DIRS": str(root), "MODEL_RERANK": TINY_RERANKER}


def service_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A test service's environment: this process's, offline, logging, and what the test adds."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GPU_SERVICE_LOG": "1", **(extra or {})}


class ServiceProcess:
    """One `gpu-service` child process on 127.0.0.1 (or another loopback address, `bind`)."""

    def __init__(
        self, env: dict[str, str] | None = None, port: int | None = None, args: list[str] | None = None,
        bind: str = "127.0.0.1",
    ):
        self.bind = bind
        self.port = port or free_port()
        self.env = service_env(env)
        self.args = args or []
        self.scheme = "https" if "--ssl-certfile" in self.args else "http"
        self.process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self.log_path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"gpu-service-{bind}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bind}:{self.port}"

    forkable = True
    """Whether it runs this checkout's `gpu_service` (then the zygote may fork it)."""
    netns: str | None = None
    """The network namespace it runs in (`/proc/<pid>/ns/net`), when not the test run's."""

    def arguments(self) -> list[str]:
        return ["--host", self.bind, "--port", str(self.port), *self.args]

    def command(self) -> list[str]:
        """The command that starts it when it is not forked from the zygote."""
        prefix = ["nsenter", f"--net={self.netns}", "--"] if self.netns else []
        return [*prefix, sys.executable, "-m", "gpu_service", *self.arguments()]

    def start(self, wait: bool = True, timeout: float = 120.0) -> ServiceProcess:
        forked = zygote(service_env()) if self.forkable else None
        refused = forked.refuses(self.env) if forked is not None else "not forked"
        if forked is not None and refused is None:
            self.process = forked.spawn("gpu_service", self.arguments(), self.env, ROOT, self.log_path, self.netns)
        else:
            with open(self.log_path, "ab") as log:
                log.write(f"[tests] started as its own process: {refused}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    self.command(), env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT,
                    preexec_fn=die_with_parent,  # even a killed test run leaves no service behind
                )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_until(self.ready, timeout=timeout, interval=0.2,
                   message=lambda: f"gpu-service on {self.url} not ready in {timeout}s:\n{self.logs()[-3000:]}")

    def ready(self) -> bool:
        """Whether the service answers /health and has warmed its defaults; raises if its process has ended."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"gpu-service exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0, verify=False).status_code == 200 and self.warm()
        except httpx.HTTPError:
            return False

    def warm(self) -> bool:
        """Whether start-up has finished warming the default models (each one loaded, or failed).

        `/health` answers while they still load in the background; a bridge that reads `/info` then
        routes a model's calls to the hosts that already hold it (pool/routing.py), so a test that
        expects every host to take work waits for this too."""
        warm = self.env.get("GPU_WARM_DEFAULTS", "1").lower()
        if warm in FALSE_WORDS:
            return True
        key = self.env.get("API_KEY")
        headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION), **({"X-API-Key": key} if key else {})}
        r = httpx.get(f"{self.url}/info", timeout=2.0, verify=False, headers=headers)
        if r.status_code != 200:
            return True  # a service that keeps /info to itself: nothing to wait for that a test can see
        named = None if warm in TRUE_WORDS else {kind.strip() for kind in warm.split(",")}
        tasks = [TaskModels.model_validate(models) for task, models in (r.json().get("capabilities") or {}).items()
                 if named is None or task in named]
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
