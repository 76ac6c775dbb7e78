"""Reranking through the service vs `CrossEncoder.predict` in-process (issue 13).

1,000 documents of mixed lengths (most a sentence, every seventh a paragraph) against one
query, on the same small random-weight cross-encoder the tests build (no reranker weights
are available offline): `POST /v1/rerank` over HTTP, and `CrossEncoder.predict` with its
default batch size in this process (with all torch threads and with one: the faster is the
baseline), and the bridge's `GpuClient.rerank` sharding the documents over 2 simulated hosts
(two service processes on this machine, so they share its CPU: this shows the bridge's
sharding and merge overhead, not a two-GPU speed-up). Best of 3 each.
Run: `.venv/bin/python -m bench.rerank`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import httpx
import torch

from bench.common import best_of, save, service, table, texts
from bench.tiny_reranker import build_tiny_reranker
from gpu_protocol.rerank import RerankRequest
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.pool.pool import HostPool

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCUMENTS = 1000
QUERY = "neural network inference for agents on remote hosts"
SHARD = 250


def corpus() -> list[str]:
    docs = texts(DOCUMENTS, seed=3)
    return [" ".join([d] * 8) if i % 7 == 0 else d for i, d in enumerate(docs)]


def main() -> None:
    from sentence_transformers import CrossEncoder

    docs = corpus()
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_reranker(Path(tmp) / "tiny-reranker")
        env = {"GPU_MODEL_DIRS": tmp, "MODEL_RERANK": "tiny-reranker"}
        with service(env) as svc, httpx.Client(timeout=600) as http:
            def via_service() -> None:
                http.post(f"{svc.url}/v1/rerank", json={"query": QUERY, "documents": docs}).raise_for_status()

            via_service()
            t_service = best_of(3, via_service)
            with service(env) as second:
                t_sharded = sharded_over([svc.url, second.url], docs)
        model = CrossEncoder(str(Path(tmp) / "tiny-reranker"), device="cpu")
        pairs = [(QUERY, d) for d in docs]
        model.predict(pairs[:64])
        cores = torch.get_num_threads()
        t_all_cores = best_of(3, lambda: model.predict(pairs))
        # On a busy shared CPU one torch thread can beat all of them: the baseline is the faster.
        torch.set_num_threads(1)
        t_one_thread = best_of(3, lambda: model.predict(pairs))
        torch.set_num_threads(cores)
    t_local = min(t_all_cores, t_one_thread)
    ratio = t_local / t_service
    table(f"Reranking {DOCUMENTS:,} documents (mixed lengths, best of 3)", ["path", "seconds", "documents/s"],
          [["service POST /v1/rerank (HTTP)", round(t_service, 3), round(DOCUMENTS / t_service, 1)],
           [f"CrossEncoder.predict in-process, {cores} torch threads", round(t_all_cores, 3),
            round(DOCUMENTS / t_all_cores, 1)],
           ["CrossEncoder.predict in-process, 1 torch thread", round(t_one_thread, 3), round(DOCUMENTS / t_one_thread, 1)],
           ["ratio service / faster in-process throughput", round(ratio, 3), "target >= 0.85"],
           [f"bridge GpuClient.rerank, 2 hosts (same CPU), shards of {SHARD}", round(t_sharded, 3),
            round(DOCUMENTS / t_sharded, 1)]])
    save("rerank", {"service_s": t_service, "in_process_all_cores_s": t_all_cores,
                    "in_process_one_thread_s": t_one_thread, "ratio": ratio,
                    "bridge_2_hosts_sharded_s": t_sharded, "shard_size": SHARD})


def sharded_over(urls: list[str], docs: list[str]) -> float:
    """Best of 3 of the bridge reranking `docs` sharded over the hosts at `urls` (one warm-up first)."""
    config = parse_config({"hosts": [{"url": u} for u in urls], "shardSize": SHARD, "timeout": 600}, "bench")
    request = RerankRequest(query=QUERY, documents=docs, top_n=10)

    async def run() -> float:
        pool = HostPool(config)
        client = GpuClient(config, pool)
        try:
            await client.rerank(request)
            timings = [(await client.rerank(request)).seconds for _ in range(3)]
        finally:
            await pool.close()
        return min(timings)

    return asyncio.run(run())


if __name__ == "__main__":
    main()
