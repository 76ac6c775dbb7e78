"""gpu_similarity computed on the host vs from vectors pulled to the bridge (issue 6).

The same real service, two ways: as a `gpu-service` host (POST /similarity: the host
embeds and scores, only the scores travel) and as an `openai` host (the bridge fetches
the vectors from /v1/embeddings and scores them itself, which is what any bridge without
a host-side similarity has to do). A query against N documents, through an in-memory MCP
client; also the bytes each way puts on the wire between host and bridge.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from mcp import Client

from bench.common import save, service, table, texts
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server

SIZES = (256, 2000)


async def timed(url: str, kind: str, docs: list[str]) -> float:
    config = {"hosts": [{"url": url, "type": kind, "model": "all-MiniLM-L6-v2"}], "shardSize": len(docs)}
    args = {"texts": docs, "query": "neural network inference for agents", "top_k": 5}
    async with Bridge(parse_config(config, "bench"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as client:
            await client.call_tool("gpu_similarity", args)
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                result = await client.call_tool("gpu_similarity", args)
                best = min(best, time.perf_counter() - started)
                assert not result.is_error
    return best


def wire_bytes(url: str, docs: list[str]) -> tuple[int, int]:
    query = "neural network inference for agents"
    scores = httpx.post(f"{url}/similarity", json={"texts": docs, "query": query}, timeout=300)
    vectors = httpx.post(f"{url}/v1/embeddings", json={"input": [*docs, query]}, timeout=300)
    return len(scores.content), len(vectors.content)


def main() -> None:
    rows, results = [], {}
    with service() as svc:
        for n in SIZES:
            docs = texts(n)
            on_host = asyncio.run(timed(svc.url, "gpu-service", docs))
            in_bridge = asyncio.run(timed(svc.url, "openai", docs))
            sent_scores, sent_vectors = wire_bytes(svc.url, docs)
            rows.append([n, round(on_host, 3), round(in_bridge, 3), round(in_bridge / on_host, 2),
                         f"{sent_scores / 1e3:.0f} kB", f"{sent_vectors / 1e6:.2f} MB"])
            results[str(n)] = {"on_host_s": on_host, "in_bridge_s": in_bridge,
                               "scores_bytes": sent_scores, "vectors_bytes": sent_vectors}
    table("gpu_similarity, query vs N documents (best of 3, in-memory MCP client)",
          ["documents", "on the host s", "vectors to bridge s", "ratio", "host->bridge, scores",
           "host->bridge, vectors"], rows)
    save("similarity", results)


if __name__ == "__main__":
    main()
