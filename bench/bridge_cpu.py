"""The bridge's own CPU time for one 2,000 x 384 gpu_embed (issue 12).

A simulated host (`httpx.MockTransport`, in this process) answers precomputed base64 shards,
so what `time.process_time()` measures is the bridge: building and sending 8 shard requests,
reading their answers (JSON, base64, the count/width/finite check), joining the shards, and
encoding the tool's result (`embed_output`, then the structured content as the MCP server
dumps it). The host's own cost here is one `json.loads` of each request's texts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import numpy as np

from bench.common import save, table
from gpu_protocol.embed import EmbedRequest
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.embed import embed_output
from mcp_bridge.pool.pool import HostPool

N, DIMS, SHARD = 2000, 384, 256
RUNS = 7


def simulated_host(rows: np.ndarray) -> httpx.MockTransport:
    """Our service's /embed answer for each shard, precomputed: the rows of the texts `text <i>`."""
    answers: dict[tuple[int, int], bytes] = {}
    for lo in range(0, len(rows), SHARD):
        part = rows[lo : lo + SHARD]
        body = {"model": "sim", "dimensions": DIMS, "count": len(part), "truncated": 0,
                "embeddings_base64": base64.b64encode(part.tobytes()).decode()}
        answers[lo, len(part)] = json.dumps(body).encode()

    def handle(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        content = answers[int(texts[0].split()[1]), len(texts)]
        return httpx.Response(200, content=content, headers={"content-type": "application/json"})

    return httpx.MockTransport(handle)


async def measure(encoding: str) -> list[float]:
    rows = np.random.default_rng(0).standard_normal((N, DIMS)).astype("<f4")
    config = parse_config({"hosts": [{"url": "http://sim.test"}], "shardSize": SHARD,
                           "limits": {"maxResultMB": 64}}, "bench")
    pool = HostPool(config, transport=simulated_host(rows))
    gpu = GpuClient(config, pool)
    request = EmbedRequest(texts=[f"text {i}" for i in range(N)])
    times = []
    for _ in range(RUNS):
        start = time.process_time()
        result = await gpu.embed_request(request)
        content = embed_output(result, encoding, 64).model_dump(mode="json")  # type: ignore[arg-type]
        times.append(time.process_time() - start)
        if encoding == "base64":
            assert base64.b64decode(content["embeddings_base64"]) == rows.tobytes()
        else:
            assert content["embeddings"] == rows.tolist()
    await pool.close()
    return times


def main() -> None:
    out = {}
    for encoding in ("base64", "float"):
        times = asyncio.run(measure(encoding))
        out[encoding] = {"best_cpu_s": min(times), "median_cpu_s": sorted(times)[len(times) // 2]}
    table(f"Bridge CPU for one {N} x {DIMS} gpu_embed, simulated host (best / median of {RUNS})",
          ["encoding", "best CPU s", "median CPU s"],
          [[name, r["best_cpu_s"], r["median_cpu_s"]] for name, r in out.items()])
    save("bridge_cpu", out)


if __name__ == "__main__":
    main()
