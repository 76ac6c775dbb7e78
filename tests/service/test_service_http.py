"""The GPU service over real HTTP: a `gpu-service` process on a loopback port, real weights."""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from gpu_protocol.embed import EmbedResponse
from tests.service.test_service_bertscore import CANDS, REFS
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess

KEY = "s3cret-test-key-123"


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@process_fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> ServiceProcess:
    """A service with tiny limits, a strict allowlist, a broken model dir and a custom baseline."""
    models = tmp_path_factory.mktemp("models")
    (models / "broken-model").mkdir()
    (models / "broken-model" / "config.json").write_text("{not json")
    baselines = tmp_path_factory.mktemp("baselines")
    (baselines / "en").mkdir()
    rows = "LAYER,P,R,F\n" + "".join(f"{i},0.{30 + i},0.{31 + i},0.{32 + i}\n" for i in range(8))
    (baselines / "en" / "all-MiniLM-L6-v2.tsv").write_text(rows)
    svc = ServiceProcess(env={
        "GPU_MAX_TEXTS": "8", "GPU_MAX_TEXT_CHARS": "200", "GPU_MAX_BODY_BYTES": "20000",
        "ALLOWED_MODELS": "org/allowed-but-absent", "GPU_MODEL_DIRS": str(models),
        "BERTSCORE_BASELINE_DIRS": str(baselines),
    }).start()
    yield svc
    svc.stop()


# --------------------------------------------------------------------------- endpoints


def test_health_info_status(service: ServiceProcess) -> None:
    health = httpx.get(f"{service.url}/health").json()
    assert health == {"status": "ok", "device": "cpu", "problems": []}
    info = httpx.get(f"{service.url}/info").json()
    assert info["device"] == "cpu" and info["torch_version"].startswith("2.")
    assert info["vram_total_mb"] is None  # no GPU here
    assert {m["name"] for m in info["models"]} >= {"all-MiniLM-L6-v2", "all-MiniLM-L6-v2@L6"}
    status = httpx.get(f"{service.url}/status").json()
    assert status["status"] == "ok" and status["queue_depth"] == 0 and status["uptime_s"] > 0


def test_embed_shapes_and_meaning(service: ServiceProcess) -> None:
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    r = httpx.post(f"{service.url}/embed", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "all-MiniLM-L6-v2" and body["dimensions"] == 384 and body["count"] == 3
    vecs = body["embeddings"]
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs)
    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2]) + 0.3
    assert float(r.headers["x-queue-time"]) >= 0 and float(r.headers["x-inference-time"]) > 0


def test_embeddings_equal_sentence_transformers(service: ServiceProcess, reference_embedder) -> None:  # type: ignore[no-untyped-def]
    texts = ["short", "a somewhat longer sentence about GPUs and agents", "Ünïcödé text, with punctuation!"]
    ours = httpx.post(f"{service.url}/embed", json={"texts": texts}).json()["embeddings"]
    ref = reference_embedder.encode(texts, normalize_embeddings=True)
    assert torch.allclose(torch.tensor(ours), torch.from_numpy(ref), atol=1e-5)


def test_similarity_equals_sentence_transformers_cosine(service: ServiceProcess, reference_embedder) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers import util

    docs = ["A man is eating food.", "The stock market fell sharply today.", "A man is eating a piece of bread.",
            "Shares dropped at the open.", "A man is eating food."]
    query = "Someone has a meal."
    ref = util.cos_sim(reference_embedder.encode([query]), reference_embedder.encode(docs))[0]

    q = httpx.post(f"{service.url}/similarity", json={"mode": "query", "texts": docs, "query": query, "top_k": 3})
    assert q.status_code == 200, q.text
    body = q.json()
    assert body["mode"] == "query" and body["count"] == 6 and body["model"] == "all-MiniLM-L6-v2"
    assert torch.allclose(torch.tensor(body["scores"]), ref, atol=1e-5)
    # Docs 0 and 4 are the same text: the service embeds it once and fans the vector out, so their
    # scores are bit-identical and rank in input order on every CPU (tests/service/test_dedupe.py).
    assert [m["index"] for m in body["matches"]] == [0, 4, 2]
    assert float(q.headers["x-inference-time"]) > 0

    pairs = httpx.post(f"{service.url}/similarity", json={"mode": "pairs", "texts": docs[:2], "texts_b": docs[2:4]}).json()
    ref_pairs = util.pairwise_cos_sim(reference_embedder.encode(docs[:2]), reference_embedder.encode(docs[2:4]))
    assert torch.allclose(torch.tensor(pairs["scores"]), ref_pairs, atol=1e-5) and "matches" not in pairs

    matrix = httpx.post(f"{service.url}/similarity", json={"mode": "matrix", "texts": docs}).json()["matrix"]
    assert torch.allclose(torch.tensor(matrix), util.cos_sim(reference_embedder.encode(docs), reference_embedder.encode(docs)), atol=1e-5)
    assert all(-1 <= x <= 1 for row in matrix for x in row) and matrix[0][4] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("body", "needle"), [
    ({"mode": "pairs", "texts": ["a", "b"], "texts_b": ["c"]}, "one text per item of texts (2); got 1"),
    ({"mode": "pairs", "texts": ["a"]}, "mode=pairs needs texts_b"),
    ({"mode": "query", "texts": ["a"]}, "mode=query needs a non-empty `query`"),
    ({"mode": "query", "texts": ["a"], "query": "q", "texts_b": ["b"]}, "texts_b is only used with mode=pairs"),
    ({"mode": "matrix", "texts": ["a"], "query": "q"}, "query is only used with mode=query"),
    ({"mode": "matrix", "texts": [f"t{i}" for i in range(65)]}, "at most 64 texts (got 65)"),
    ({"mode": "query", "texts": ["a", " "], "query": "q"}, "texts[1] is blank"),
    ({"mode": "query", "texts": ["a"], "query": "q", "top_k": 0}, "top_k"),
    ({"mode": "cluster", "texts": ["a"]}, "mode"),
])
def test_similarity_rejects_bad_requests(service: ServiceProcess, body: dict, needle: str) -> None:
    r = httpx.post(f"{service.url}/similarity", json=body)
    assert r.status_code == 422 and needle in r.text, r.text


def test_similarity_mode_follows_from_the_fields(service: ServiceProcess) -> None:
    texts = ["a cat sleeps", "a kitten naps", "tax forms"]
    alone = httpx.post(f"{service.url}/similarity", json={"texts": texts})
    assert alone.status_code == 200, alone.text
    assert alone.json()["mode"] == "matrix" and len(alone.json()["matrix"]) == 3
    paired = httpx.post(f"{service.url}/similarity", json={"texts": texts[:1], "texts_b": texts[1:2]}).json()
    assert paired["mode"] == "pairs" and len(paired["scores"]) == 1
    ranked = httpx.post(f"{service.url}/similarity", json={"texts": texts, "query": "a sleeping cat"}).json()
    assert ranked["mode"] == "query" and ranked["matches"][0]["index"] == 0
    both = httpx.post(f"{service.url}/similarity", json={"texts": texts, "query": "q", "texts_b": texts})
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    many = httpx.post(f"{service.url}/similarity", json={"texts": [f"t{i}" for i in range(65)]})
    assert many.status_code == 422 and "pass a `query`" in many.json()["detail"]


def test_similarity_limits_name_the_field(limited: ServiceProcess) -> None:
    r = httpx.post(f"{limited.url}/similarity", json={"mode": "pairs", "texts": ["a"], "texts_b": ["b" * 300]})
    assert r.status_code == 422 and "texts_b[0] has 300 characters" in r.json()["detail"]
    many = [f"t{i}" for i in range(6)]
    # 6 + 6 texts are embedded, but each field is within GPU_MAX_TEXTS=8: accepted.
    ok = httpx.post(f"{limited.url}/similarity", json={"mode": "pairs", "texts": many, "texts_b": many})
    assert ok.status_code == 200 and ok.json()["scores"] == pytest.approx([1.0] * 6, abs=1e-5)


def test_float_answers_read_back_to_the_exact_float32_vectors(service: ServiceProcess) -> None:
    """Numbers are written as the shortest decimal of each float32 (as TEI and Infinity do): read
    back as float32 they equal the base64 blob of the same request bit for bit (same texts, same
    batch layout, so the same computation)."""
    import numpy as np

    from gpu_protocol.codec import decode_float32_rows

    texts = ["exact numbers", "a second, longer text to embed", "third"]
    floats = httpx.post(f"{service.url}/embed", json={"texts": texts}, timeout=60).json()
    packed = httpx.post(f"{service.url}/embed", json={"texts": texts, "encoding_format": "base64"}, timeout=60).json()
    exact = np.asarray(decode_float32_rows(packed["embeddings_base64"], 3, 384), dtype=np.float32)
    assert np.array_equal(np.asarray(floats["embeddings"], dtype=np.float32), exact)
    openai = httpx.post(f"{service.url}/v1/embeddings", json={"input": texts}, timeout=60).json()
    rows = [d["embedding"] for d in sorted(openai["data"], key=lambda d: d["index"])]
    assert np.array_equal(np.asarray(rows, dtype=np.float32), exact)


def test_embed_options(service: ServiceProcess) -> None:
    texts = ["hello world", "x " * 600]
    floats = httpx.post(f"{service.url}/embed", json={"texts": texts}).json()
    b64 = EmbedResponse.model_validate(
        httpx.post(f"{service.url}/embed", json={"texts": texts, "encoding_format": "base64"}).json()
    )
    assert b64.embeddings is None and torch.allclose(torch.tensor(b64.vectors()), torch.tensor(floats["embeddings"]))
    assert floats["truncated"] == 1  # the 600-word text is cut at 256 tokens, and we say so
    short = httpx.post(f"{service.url}/embed", json={"texts": texts, "dimensions": 64}).json()
    assert short["dimensions"] == 64
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in short["embeddings"])
    full = torch.tensor(floats["embeddings"][0][:64])
    assert torch.allclose(torch.tensor(short["embeddings"][0]), full / full.norm(), atol=1e-5)
    prompted = httpx.post(f"{service.url}/embed", json={"texts": ["hi"], "prompt": "query: "}).json()
    plain = httpx.post(f"{service.url}/embed", json={"texts": ["query: hi"]}).json()
    assert torch.allclose(torch.tensor(prompted["embeddings"]), torch.tensor(plain["embeddings"]), atol=1e-6)
    bad = httpx.post(f"{service.url}/embed", json={"texts": ["hi"], "prompt_name": "nope"})
    assert bad.status_code == 422 and "prompt_name 'nope'" in bad.json()["detail"]
    too_wide = httpx.post(f"{service.url}/embed", json={"texts": ["hi"], "dimensions": 1000})
    assert too_wide.status_code == 422 and "384" in too_wide.json()["detail"]


def test_openai_compatible_endpoint_with_the_openai_client(service: ServiceProcess) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(input=["first text", "second text"], model="all-MiniLM-L6-v2")
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) == 384
    assert result.usage.prompt_tokens > 0
    ours = httpx.post(f"{service.url}/embed", json={"texts": ["first text"]}).json()["embeddings"][0]
    assert torch.allclose(torch.tensor(result.data[0].embedding), torch.tensor(ours), atol=1e-5)
    single = client.embeddings.create(input="one", model="all-MiniLM-L6-v2", dimensions=32)
    assert len(single.data) == 1 and len(single.data[0].embedding) == 32


def test_bertscore_rescale_with_baseline(limited: ServiceProcess, scorer_factory, tmp_path: Path) -> None:
    rows = "LAYER,P,R,F\n" + "".join(f"{i},0.{30 + i},0.{31 + i},0.{32 + i}\n" for i in range(8))
    (tmp_path / "b.tsv").write_text(rows)
    body = httpx.post(f"{limited.url}/bertscore", json={
        "candidates": CANDS[:3], "references": REFS[:3], "rescale_with_baseline": True, "lang": "en"}).json()
    scorer = scorer_factory(lang="en", rescale_with_baseline=True, baseline_path=str(tmp_path / "b.tsv"))
    p, r, f = scorer.score(CANDS[:3], REFS[:3])
    assert torch.allclose(torch.tensor(body["f1"]), f, atol=1e-5)
    assert torch.allclose(torch.tensor(body["precision"]), p, atol=1e-5)
    assert body["hash"].endswith("-custom-rescaled")


# --------------------------------------------------------------------------- errors and limits


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"texts": []}, 422, "texts"),
        ({"texts": ["ok", ""]}, 422, "texts[1] is blank"),
        ({"texts": ["ok", 5]}, 422, "texts[1]: Input should be a valid string"),
        ({}, 422, "texts"),
        ({"texts": "not a list"}, 422, "texts"),
        ({"texts": ["a"], "model": "../../etc/passwd"}, 403, "filesystem path"),
        ({"texts": ["a"], "model": "/etc"}, 403, "filesystem path"),
        ({"texts": ["a"], "model": "evil/remote-code-model"}, 403, "allowlist"),
    ],
)
def test_bad_embed_requests(service: ServiceProcess, body: dict, status: int, words: str) -> None:
    r = httpx.post(f"{service.url}/embed", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/embed", {"texts": ["ok", "  "]}, "texts[1]"),
        ("/v1/embeddings", {"input": ["ok", "\t"]}, "input[1]"),
        ("/v1/embeddings", {"input": " "}, "input[0]"),
        ("/similarity", {"texts": ["ok", "fine"], "texts_b": ["ok", " "]}, "texts_b[1]"),
        ("/bertscore", {"candidates": [""], "references": ["ok"]}, "candidates[0]"),
        ("/bertscore", {"candidates": ["ok"], "references": ["ok"], "idf": True, "idf_sentences": ["ok", " "]},
         "idf_sentences[1]"),
        ("/bertscore/idf", {"sentences": [""]}, "sentences[0]"),
        ("/bertscore/idf", {"sentences": ["ok", "\n"]}, "sentences[1]"),
        ("/v1/rerank", {"query": "q", "documents": ["ok", ""]}, "documents[1]"),
        ("/rerank", {"query": "q", "texts": [" "]}, "texts[0]"),
    ],
)
def test_a_blank_text_is_a_422_naming_it_on_every_endpoint(service: ServiceProcess, path: str, body: dict,
                                                           field: str) -> None:
    """One rule for every endpoint that takes texts: a blank one is refused before any model runs
    (issue 21 §6: `/bertscore/idf` answered 500 for `{"sentences": [""]}`)."""
    r = httpx.post(f"{service.url}{path}", json=body)
    assert r.status_code == 422, r.text
    assert f"{field} is blank" in r.json()["detail"]


def test_mismatched_bertscore_lengths(service: ServiceProcess) -> None:
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": ["a", "b"], "references": ["a"]})
    assert r.status_code == 422 and "lengths must match" in r.json()["detail"]


def test_malformed_json_and_non_utf8(service: ServiceProcess) -> None:
    for content in (b"{not json", b"\xff\xfe\x00garbage", b"[" * 100_000):
        r = httpx.post(f"{service.url}/embed", content=content, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), (content[:10], r.status_code, r.text[:200])
    assert httpx.get(f"{service.url}/health").status_code == 200


def test_limits(limited: ServiceProcess) -> None:
    r = httpx.post(f"{limited.url}/embed", json={"texts": ["a"] * 9})
    assert r.status_code == 413 and "at most 8" in r.json()["detail"] and "GPU_MAX_TEXTS" in r.json()["detail"]
    r = httpx.post(f"{limited.url}/embed", json={"texts": ["a" * 201]})
    assert r.status_code == 422 and "texts[0]" in r.json()["detail"] and "200" in r.json()["detail"]
    r = httpx.post(f"{limited.url}/embed", content=b'{"texts": ["' + b"a" * 30_000 + b'"]}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "GPU_MAX_BODY_BYTES" in r.json()["detail"]

    def chunks():
        yield b'{"texts": ["'
        for _ in range(30):
            yield b"a" * 1000
        yield b'"]}'

    r = httpx.post(f"{limited.url}/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, "a chunked body without Content-Length is counted too"


def test_model_errors(limited: ServiceProcess) -> None:
    r = httpx.post(f"{limited.url}/embed", json={"texts": ["a"], "model": "org/not-listed"})
    assert r.status_code == 403 and "ALLOWED_MODELS" in r.json()["detail"] and "org/allowed-but-absent" in r.json()["detail"]
    r = httpx.post(f"{limited.url}/embed", json={"texts": ["a"], "model": "org/allowed-but-absent"})
    assert r.status_code == 404 and "not available offline" in r.json()["detail"]
    for _ in range(2):  # a failed load is reported each time, not cached
        r = httpx.post(f"{limited.url}/embed", json={"texts": ["a"], "model": "broken-model"})
        assert r.status_code == 500 and "broken-model" in r.json()["detail"] and "could not be loaded" in r.json()["detail"]
    assert httpx.post(f"{limited.url}/embed", json={"texts": ["fine"]}).status_code == 200


# --------------------------------------------------------------------------- auth


def test_auth(keyed_service: ServiceProcess) -> None:
    url = keyed_service.url
    assert httpx.get(f"{url}/health").status_code == 200
    for method, path, body in [("GET", "/info", None), ("GET", "/status", None), ("GET", "/metrics", None),
                               ("POST", "/embed", {"texts": ["a"]}),
                               ("POST", "/bertscore", {"candidates": ["a"], "references": ["b"]}),
                               ("POST", "/similarity", {"texts": ["a"], "query": "b"}),
                               ("POST", "/v1/embeddings", {"input": "a"}), ("GET", "/openapi.json", None),
                               ("POST", "/cancel/some-id", None)]:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY[:-1]}, {"X-API-Key": KEY + "x"},
                        {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}):
            r = httpx.request(method, f"{url}{path}", json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert KEY not in r.text
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"bearer {KEY}"}):
            ok = httpx.request(method, f"{url}{path}", json=body, headers=headers)
            assert ok.status_code == 200, (path, ok.text)
    assert KEY not in keyed_service.logs()


# --------------------------------------------------------------------------- load behaviour


def test_overload_answers_429_and_every_accepted_request_completes(service_factory) -> None:
    svc = service_factory(env={"GPU_MAX_QUEUE": "16", "GPU_MAX_BATCH_SIZE": "4"}).start()
    texts = [f"sentence number {i} " * 8 for i in range(12)]

    def one(_: int) -> tuple[int, str | None, int]:
        r = httpx.post(f"{svc.url}/embed", json={"texts": texts}, timeout=60)
        count = r.json().get("count", 0) if r.status_code == 200 else 0
        return r.status_code, r.headers.get("retry-after"), count

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(24)))
    codes = [c for c, _, _ in results]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(429) > 0 and codes.count(200) > 0
    assert all(ra is not None and int(ra) >= 1 for c, ra, _ in results if c == 429)
    assert all(n == 12 for c, _, n in results if c == 200)
    assert httpx.post(f"{svc.url}/embed", json={"texts": ["after the storm"]}).status_code == 200


def test_status_shows_progress_of_a_big_job(service: ServiceProcess) -> None:
    texts = [f"progress text {i} " * 5 for i in range(1200)]
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for job in httpx.get(f"{service.url}/status").json()["active_jobs"]:
                if job["total"] == 1200:
                    seen.append((job["done"], job["total"]))
            time.sleep(0.05)

    watcher = threading.Thread(target=poll)
    watcher.start()
    try:
        r = httpx.post(f"{service.url}/embed", json={"texts": texts}, timeout=120)
    finally:
        done.set()
        watcher.join()
    assert r.status_code == 200 and r.json()["count"] == 1200
    assert any(0 < d < 1200 for d, _ in seen), f"progress should move in steps, saw {seen[:5]}"


def test_metrics_present_and_changing(service: ServiceProcess) -> None:
    def requests_count(text: str) -> float:
        lines = [ln for ln in text.splitlines()
                 if ln.startswith('gpu_service_requests_total{endpoint="/embed",status="200"}')]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = httpx.get(f"{service.url}/metrics").text
    httpx.post(f"{service.url}/embed", json={"texts": ["count me"]})
    after = httpx.get(f"{service.url}/metrics").text
    assert requests_count(after) == requests_count(before) + 1
    for name in ("gpu_service_queue_depth", "gpu_service_batch_size_bucket", "gpu_service_batch_tokens_bucket",
                 "gpu_service_queue_seconds_bucket", "gpu_service_inference_seconds_bucket",
                 "gpu_service_model_loaded_bytes"):
        assert name in after


def test_metrics_label_routes_not_raw_paths(service: ServiceProcess) -> None:
    """Request ids and scanned paths must not each become a new time series."""
    for i in range(3):
        httpx.post(f"{service.url}/cancel/req-{i}")
        httpx.get(f"{service.url}/wp-admin/{i}.php")
    text = httpx.get(f"{service.url}/metrics").text
    assert 'endpoint="/cancel/{request_id}",status="200"' in text
    assert 'endpoint="other",status="404"' in text
    assert "req-1" not in text and "wp-admin" not in text


def test_long_jobs_log_progress_without_texts(service: ServiceProcess) -> None:
    secret_text = "confidential-sentence-xyz"
    r = httpx.post(f"{service.url}/embed", json={"texts": [f"{secret_text} {i}" for i in range(600)]}, timeout=120)
    assert r.status_code == 200
    logs = service.logs()
    assert "progress job=" in logs and "done=600 total=600" in logs
    assert secret_text not in logs


