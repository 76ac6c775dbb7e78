"""Helpers shared by the benchmarks: servers on loopback, timing, and a table printer.

The benchmarks start their servers with their own small launcher (`ServerProcess`), not the
test suite's fixtures: `bench/` never imports from `tests/`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mcp_bridge.embedded import die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

__all__ = ["ServerProcess", "gpu_service_process", "free_port", "service", "table", "save", "best_of", "texts"]


class ServerProcess:
    """One HTTP server as a child process on 127.0.0.1: ready once `GET ready_path` answers 200,
    stopped with SIGTERM (then SIGKILL), and never outliving the benchmark (PR_SET_PDEATHSIG)."""

    def __init__(self, name: str, command: list[str], port: int, env: dict[str, str] | None = None,
                 ready_path: str = "/health") -> None:
        self.name = name
        self.command = command
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.log_path = Path(tempfile.gettempdir()) / f"bench-{name}-{port}.log"
        self.cwd = ROOT
        """Where it runs (`python -m` imports from there first: another checkout's code runs from its own)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, cwd=self.cwd, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} on {self.url} not ready in {timeout:.0f}s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def gpu_service_process(env: dict[str, str] | None = None) -> ServerProcess:
    """Our `gpu-service` (the same `python -m gpu_service` a user runs), bundled model, offline."""
    port = free_port()
    command = [sys.executable, "-m", "gpu_service", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess("gpu-service", command, port, env={"HF_HUB_OFFLINE": "1", **(env or {})})


@contextmanager
def service(env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    svc = gpu_service_process(env).start()
    try:
        httpx.post(f"{svc.url}/embed", json={"texts": ["warm up"]}, timeout=60)
        yield svc
    finally:
        svc.stop()


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    """Fastest of n runs: the least noisy estimate on a shared machine."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def texts(n: int, seed: int = 0) -> list[str]:
    words = ["graphics", "processing", "units", "accelerate", "neural", "network", "inference", "for", "agents", "that", "need", "embeddings", "similarity", "search", "retrieval", "evaluation", "with", "bert", "score", "on", "remote", "hosts"]
    out = []
    for i in range(n):
        k = 6 + (i * 7 + seed) % 24
        out.append(" ".join(words[(i + j * 3 + seed) % len(words)] for j in range(k)) + f" #{i}")
    return out


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"\n{title}", "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells[1:]]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def save(name: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))

