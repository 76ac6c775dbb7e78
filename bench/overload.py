"""A pool past its capacity, whose callers wait 10 s (issue 28: overload refuses batch work first, with a
Retry-After; docs/sharing.md, "No work for a caller who has gone").

Sixteen bulk clients post 64-text calls (an indexer's requests) to a bridge's `/v1/embeddings` over a service on
this machine, the bridge waiting 10 s per call (`"timeout": 10`), each client coming back after a 429's
`Retry-After` and at once after anything else; an interactive caller asks one short text every 200-250 ms beside
them. The backlog the bulk clients keep (16 x 64 texts) is more than the host finishes in 10 s on this CPU, so some
calls cannot be served in time: what matters is how the pool says so, and how much work it does for nobody. Per run: the bulk calls by answer, the texts
served per second (goodput: answered calls only), how long a refused call took to learn it, the interactive
caller's p50/p99, and the hosts the bridge ejected, over 40 s after 15 s of the same load (a cold host has
measured no rate yet). `--before DIR` runs the same load, in the same run, on the
code of a checkout in DIR (`git worktree add DIR <commit>`): its services and bridge import from there.

    python -m bench.overload                        # today's code (~1.5 minutes)
    python -m bench.overload --before /tmp/before   # and an earlier commit's, side by side (~3 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import gpu_service_process, save, table
from bench.fairness_bridge import BridgeProcess
from bench.fairness_load import bulk_texts, percentile, short_texts

BULK_CLIENTS = 16
CALL_TEXTS = 64
WAIT_S = 10.0
"""The bridge's deadline per call."""
HOSTS = 1
"""Services behind the bridge. One: two on this 2-core machine contend for its cores, so each one's rate halves
whenever the other runs, which no host of a real pool (a machine of its own) sees."""
WARM_S = 15.0
"""Load before the measured part: a cold host has measured no rate yet (docs/sharing.md)."""
LOAD_S = 40.0
MODEL = "all-MiniLM-L6-v2"


@dataclass
class Run:
    label: str
    bulk: collections.Counter[int] = field(default_factory=collections.Counter)
    served_texts: int = 0
    refused_after: list[float] = field(default_factory=list)
    """Seconds a bulk call took to be answered 429."""
    interactive: list[float] = field(default_factory=list)
    interactive_failed: int = 0
    ejections: int = 0


async def bulk_client(i: int, http: httpx.AsyncClient, bridge: BridgeProcess, run: Run, end: float) -> None:
    rng = random.Random(i)
    while time.monotonic() < end:
        started = time.monotonic()
        counted = run if started >= end - LOAD_S else Run("warming")  # warming: sent, not counted
        try:
            answer = await http.post(f"{bridge.url}/v1/embeddings", headers=bridge.headers,
                                     json={"input": bulk_texts(rng)[:CALL_TEXTS], "model": MODEL})
        except httpx.HTTPError:
            counted.bulk[0] += 1
            continue
        counted.bulk[answer.status_code] += 1
        if answer.status_code == 200:
            counted.served_texts += len(answer.json()["data"])
        elif answer.status_code == 429:
            counted.refused_after.append(time.monotonic() - started)
            await asyncio.sleep(min(float(answer.headers.get("retry-after", 1)), max(0.0, end - time.monotonic())))


async def interactive_client(http: httpx.AsyncClient, bridge: BridgeProcess, run: Run, end: float) -> None:
    rng, texts = random.Random(99), short_texts()
    while time.monotonic() < end:
        started = time.monotonic()
        counted = run if started >= end - LOAD_S else Run("warming")
        answer = await http.post(f"{bridge.url}/v1/embeddings", headers=bridge.headers,
                                 json={"input": [rng.choice(texts)], "model": MODEL})
        if answer.status_code == 200:
            counted.interactive.append(time.monotonic() - started)
        else:
            counted.interactive_failed += 1
        await asyncio.sleep(rng.uniform(0.2, 0.25))


async def load(bridge: BridgeProcess, run: Run) -> None:
    async with httpx.AsyncClient(timeout=WAIT_S * 3) as http:
        end = time.monotonic() + WARM_S + LOAD_S
        ejected_before = await ejections(http, bridge)
        await asyncio.gather(interactive_client(http, bridge, run, end),
                             *(bulk_client(i, http, bridge, run, end) for i in range(BULK_CLIENTS)))
        run.ejections = await ejections(http, bridge) - ejected_before


async def ejections(http: httpx.AsyncClient, bridge: BridgeProcess) -> int:
    metrics = (await http.get(f"{bridge.url}/metrics", headers=bridge.headers)).text
    counts = re.findall(r"^gpu_bridge_host_ejections_total\{[^}]*\} (\S+)", metrics, re.MULTILINE)
    return sum(int(float(n)) for n in counts)


def measure(label: str, code: str | None) -> Run:
    """The load on two fresh services and a bridge of today's code, or of the checkout at `code`."""
    env = {"PYTHONPATH": code} if code else {}
    services = [gpu_service_process(env) for _ in range(HOSTS)]
    bridge = BridgeProcess([s.url for s in services], timeout=WAIT_S)
    bridge.env.update(env)
    run = Run(label)
    try:
        for server in (*services, bridge):
            server.cwd = Path(code) if code else server.cwd
        for svc in services:
            svc.start()
        for svc in services:
            httpx.post(f"{svc.url}/embed", json={"texts": ["warm up"]}, timeout=60)
        bridge.start()
        asyncio.run(load(bridge, run))
    finally:
        bridge.stop()
        for svc in services:
            svc.stop()
    return run


def row(run: Run) -> list[object]:
    calls = sum(run.bulk.values())
    other = calls - run.bulk[200] - run.bulk[429] - run.bulk[504]
    p50_refused = percentile(run.refused_after, 50)
    p50, p99 = percentile(run.interactive, 50), percentile(run.interactive, 99)
    return [run.label, calls, run.bulk[200], run.bulk[429], run.bulk[504], other, run.served_texts / LOAD_S,
            "-" if p50_refused is None else p50_refused, "-" if p50 is None else p50, "-" if p99 is None else p99,
            run.interactive_failed, run.ejections]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", metavar="DIR", help="also run the load on the code of the checkout in DIR")
    args = parser.parse_args()
    runs = ([measure("before", args.before)] if args.before else []) + [measure("today", None)]
    table(f"{BULK_CLIENTS} bulk clients x {CALL_TEXTS} texts + 1 interactive caller, bridge over {HOSTS} service(s) waiting "
          f"{WAIT_S:.0f} s, {LOAD_S:.0f} s",
          ["code", "bulk calls", "200", "429", "504", "other", "texts/s served", "p50 to a 429 (s)",
           "interactive p50 (s)", "p99 (s)", "interactive failed", "hosts ejected"],
          [row(run) for run in runs])
    save("overload", {"runs": [{**run.__dict__, "bulk": dict(run.bulk)} for run in runs]})


if __name__ == "__main__":
    main()
