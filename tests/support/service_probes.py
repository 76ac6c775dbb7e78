"""What a test reads off a running service over HTTP: its own rerank ranking (the reference for the
bridge's), and counters from its /metrics."""

from __future__ import annotations

from typing import Any

import httpx


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
