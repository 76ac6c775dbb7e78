"""Helpers shared by the benchmarks: services on loopback, timing, and a table printer."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from tests.conftest import ServiceProcess, free_port  # noqa: E402

__all__ = ["ServiceProcess", "free_port", "service", "table", "save", "best_of", "texts"]


@contextmanager
def service(env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(env=env).start()
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

