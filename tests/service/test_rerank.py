"""Reranking over real HTTP: a `gpu-service` process serving a small cross-encoder built here.

No reranker weights are available offline, so the tests build one: a 2-layer BERT with
random weights and a one-label head over the bundled tokenizer, saved in a directory the
service may load from (GPU_MODEL_DIRS). Its scores mean nothing, but sentence-transformers'
`CrossEncoder` on the same directory must compute the same ones, and that is what is checked.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import torch

from tests.support.services import TINY_RERANKER, ServiceProcess
from tests.support.waiting import wait_until

RERANKER = TINY_RERANKER
QUERY = "how do graphics cards speed up neural networks"
DOCS = [
    "GPUs run matrix multiplications in parallel.",
    "The cat sat on the mat.",
    "Bananas are yellow.",
    "Neural networks need many multiply-add operations.",
    "Stock markets fell today.",
    "A short one.",
    "Paris is the capital of France.",
]
LONG_DOC = "word " * 600  # ~600 tokens: longer than the model's 512 with the query


@pytest.fixture(scope="module")
def model_dir(tiny_reranker_env: dict[str, str]) -> Path:
    return Path(tiny_reranker_env["GPU_MODEL_DIRS"])


@pytest.fixture
def reranker(reranker_service: ServiceProcess) -> ServiceProcess:
    """The shared service whose default reranker (MODEL_RERANK) is the tiny cross-encoder, named by folder."""
    return reranker_service


@pytest.fixture(scope="module")
def cross_encoder(model_dir: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_dir / RERANKER), device="cpu")


def predict(cross_encoder, docs: list[str], raw: bool = False) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """sentence-transformers' own scores: its default activation (sigmoid), or the logits."""
    activation = torch.nn.Identity() if raw else None
    return torch.from_numpy(cross_encoder.predict([(QUERY, d) for d in docs], activation_fn=activation))


def ranking(scores: torch.Tensor) -> list[int]:
    values = scores.tolist()
    gaps = sorted(values)
    # Precondition: no near-ties, so the ranking does not depend on rounding between batch layouts.
    assert min(b - a for a, b in zip(gaps, gaps[1:], strict=False)) > 1e-3
    return sorted(range(len(values)), key=lambda i: -values[i])


# Tolerances: the service batches pairs differently from CrossEncoder.predict (other padding,
# other batch sizes), so the float32 sums differ in the last bits; 1e-5 is far below any gap
# between the documents' scores.


def test_v1_rerank_equals_cross_encoder(reranker: ServiceProcess, cross_encoder) -> None:  # type: ignore[no-untyped-def]
    documents = [DOCS[0], {"text": DOCS[1]}, *DOCS[2:]]
    r = httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": documents})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = predict(cross_encoder, DOCS)
    assert [res["index"] for res in body["results"]] == ranking(expected)
    ours = torch.tensor([res["relevance_score"] for res in sorted(body["results"], key=lambda x: x["index"])])
    assert torch.allclose(ours, expected, atol=1e-5)
    assert all(0 <= res["relevance_score"] <= 1 and "document" not in res for res in body["results"])
    assert body["model"] == RERANKER and body["truncated"] == 0
    tokens = sum(len(cross_encoder[0].tokenizer(QUERY, d)["input_ids"]) for d in DOCS)
    assert body["usage"] == {"total_tokens": tokens}
    assert float(r.headers["x-inference-time"]) > 0


def test_top_n_and_return_documents(reranker: ServiceProcess) -> None:
    full = httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": DOCS}).json()["results"]
    top = httpx.post(f"{reranker.url}/v1/rerank", json={
        "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True}).json()["results"]
    assert [t["index"] for t in top] == [f["index"] for f in full[:3]]
    assert [t["document"] for t in top] == [{"text": DOCS[f["index"]]} for f in full[:3]]
    more = httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": DOCS[:2], "top_n": 10})
    assert len(more.json()["results"]) == 2, "top_n past the number of documents returns them all"


def test_tei_rerank_scores_raw_scores_and_text(reranker: ServiceProcess, cross_encoder) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{reranker.url}/rerank", json={"query": QUERY, "texts": DOCS})
    assert r.status_code == 200, r.text
    hits = r.json()
    expected = predict(cross_encoder, DOCS)
    assert [h["index"] for h in hits] == ranking(expected) and all(set(h) == {"index", "score"} for h in hits)
    assert torch.allclose(torch.tensor([h["score"] for h in sorted(hits, key=lambda h: h["index"])]), expected, atol=1e-5)

    raw = httpx.post(f"{reranker.url}/rerank", json={
        "query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True}).json()
    logits = predict(cross_encoder, DOCS, raw=True)
    assert torch.allclose(torch.tensor([h["score"] for h in sorted(raw, key=lambda h: h["index"])]), logits, atol=1e-5)
    assert [h["index"] for h in raw] == [h["index"] for h in hits]
    assert all(h["text"] == DOCS[h["index"]] for h in raw)


def test_long_documents_are_truncated_and_counted(reranker: ServiceProcess, cross_encoder) -> None:  # type: ignore[no-untyped-def]
    docs = [DOCS[0], LONG_DOC, DOCS[3]]
    body = httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": docs}).json()
    assert body["truncated"] == 1
    ours = torch.tensor([res["relevance_score"] for res in sorted(body["results"], key=lambda x: x["index"])])
    assert torch.allclose(ours, predict(cross_encoder, docs), atol=1e-5), "cut where CrossEncoder cuts"

    refused = httpx.post(f"{reranker.url}/rerank", json={"query": QUERY, "texts": docs})
    assert refused.status_code == 422, refused.text
    assert "texts[1]" in refused.json()["detail"] and "truncate=true" in refused.json()["detail"]
    cut = httpx.post(f"{reranker.url}/rerank", json={"query": QUERY, "texts": docs, "truncate": True})
    assert cut.status_code == 200 and cut.headers["x-truncated"] == "1"


def test_duplicates_are_scored_once_and_rank_in_input_order(reranker: ServiceProcess) -> None:
    def items_run() -> float:
        lines = [ln for ln in httpx.get(f"{reranker.url}/metrics").text.splitlines()
                 if ln.startswith(f'gpu_service_batch_size_sum{{model="{RERANKER}"}}')]
        return float(lines[0].split()[-1]) if lines else 0.0

    docs = [DOCS[0], DOCS[1], DOCS[0], DOCS[3], DOCS[0]]
    before = items_run()
    results = httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": docs}).json()["results"]
    assert items_run() - before == 3, "three distinct documents: three pairs through the model"
    scores = {res["index"]: res["relevance_score"] for res in results}
    assert scores[0] == scores[2] == scores[4]
    copies = [res["index"] for res in results if res["index"] in (0, 2, 4)]
    assert copies == [0, 2, 4]
    position = [res["index"] for res in results].index(0)
    assert [res["index"] for res in results][position : position + 3] == [0, 2, 4], "equal scores sit together"


def test_an_embedding_model_is_not_a_reranker(reranker: ServiceProcess) -> None:
    r = httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": DOCS, "model": "all-MiniLM-L6-v2"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "'all-MiniLM-L6-v2' is not a reranker" in detail and "BertModel" in detail
    info = httpx.get(f"{reranker.url}/info").json()
    assert not [m for m in info["models"] if m["kind"] == "rerank" and m["name"] == "all-MiniLM-L6-v2"], \
        "refused from its config, before any weights were loaded"


def test_a_reranker_is_not_an_embedding_model(reranker: ServiceProcess) -> None:
    r = httpx.post(f"{reranker.url}/embed", json={"texts": ["hello"], "model": RERANKER})
    assert r.status_code == 422, r.text
    assert f"'{RERANKER}' is a cross-encoder" in r.json()["detail"] and "/v1/rerank" in r.json()["detail"]


@pytest.mark.parametrize(("model", "words"), [
    ("org/not-listed", "not in the default allowlist"),
    ("/etc", "filesystem path"),
])
def test_a_model_that_is_not_allowed_is_refused_before_loading(reranker: ServiceProcess, model: str, words: str) -> None:
    r = httpx.post(f"{reranker.url}/rerank", json={"query": QUERY, "texts": DOCS, "model": model})
    assert r.status_code == 403 and words in r.json()["detail"], r.text


def test_without_a_reranker_the_error_says_how_to_configure_one(service: ServiceProcess) -> None:
    for path, body in (("/v1/rerank", {"query": QUERY, "documents": DOCS}), ("/rerank", {"query": QUERY, "texts": DOCS})):
        r = httpx.post(f"{service.url}{path}", json=body)
        assert r.status_code == 404, r.text
        detail = r.json()["detail"]
        assert "no reranker is configured" in detail and "MODEL_RERANK=" in detail and "BAAI/bge-reranker-base" in detail
    assert httpx.get(f"{service.url}/info").json()["default_models"]["rerank"] is None


@pytest.mark.parametrize(("path", "body", "words"), [
    ("/v1/rerank", {"query": QUERY, "documents": ["ok", " "]}, "documents[1] is blank"),
    ("/v1/rerank", {"query": QUERY, "documents": ["ok", {"text": ""}]}, "documents[1] is blank"),
    ("/v1/rerank", {"query": QUERY, "documents": []}, "documents"),
    ("/v1/rerank", {"query": " ", "documents": ["ok"]}, "query is blank"),
    ("/v1/rerank", {"query": QUERY, "documents": ["ok"], "top_n": 0}, "top_n"),
    ("/v1/rerank", {"query": QUERY, "documents": [{"txt": "ok"}]}, "documents[0]"),
    ("/rerank", {"query": QUERY, "texts": ["ok", ""]}, "texts[1] is blank"),
    ("/rerank", {"query": QUERY, "texts": ["ok"], "truncation_direction": "left"}, "truncation_direction"),
    ("/rerank", {"query": QUERY, "texts": ["ok"], "top_n": 1}, "top_n"),
])
def test_bad_requests_name_the_field(reranker: ServiceProcess, path: str, body: dict, words: str) -> None:
    r = httpx.post(f"{reranker.url}{path}", json=body)
    assert r.status_code == 422 and words in r.json()["detail"], r.text


def test_limits_and_deadline(service_factory, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(env={
        "GPU_MODEL_DIRS": str(model_dir), "MODEL_RERANK": RERANKER, "GPU_MAX_TEXTS": "4", "GPU_MAX_TEXT_CHARS": "200",
        "GPU_REQUEST_TIMEOUT": "0.1", "GPU_WARM_DEFAULTS": "0"}).start()
    r = httpx.post(f"{svc.url}/v1/rerank", json={"query": QUERY, "documents": DOCS[:5]})
    assert r.status_code == 413 and "documents has 5 items" in r.json()["detail"] and "GPU_MAX_TEXTS" in r.json()["detail"]
    r = httpx.post(f"{svc.url}/rerank", json={"query": QUERY, "texts": DOCS[:5]})
    assert r.status_code == 413 and "texts has 5 items" in r.json()["detail"]
    r = httpx.post(f"{svc.url}/v1/rerank", json={"query": QUERY, "documents": ["ok", "x" * 300]})
    assert r.status_code == 422 and "documents[1] has 300 characters" in r.json()["detail"]
    # Nothing is warmed, so this request loads the model first: that alone takes far longer than
    # the 0.1 s deadline, and the pairs are never run.
    r = httpx.post(f"{svc.url}/v1/rerank", json={"query": QUERY, "documents": DOCS[:4]}, timeout=120)
    assert r.status_code == 504 and "deadline" in r.json()["detail"], r.text


def test_info_status_metrics_and_cancel(reranker: ServiceProcess) -> None:
    assert httpx.post(f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 200
    info = httpx.get(f"{reranker.url}/info").json()
    assert info["default_models"]["rerank"] == RERANKER
    ours = [m for m in info["models"] if m["name"] == RERANKER]
    assert len(ours) == 1 and ours[0]["kind"] == "rerank" and ours[0]["default"] is True

    docs = [f"document number {i} about graphics processing units and neural network inference " * 20
            for i in range(2000)]
    outcome: list[httpx.Response] = []
    call = threading.Thread(target=lambda: outcome.append(httpx.post(
        f"{reranker.url}/v1/rerank", json={"query": QUERY, "documents": docs},
        headers={"X-Request-Id": "rerank-job-1"}, timeout=120)))
    call.start()
    seen: list[dict] = []

    def shown_or_over() -> bool:
        seen[:] = [j for j in httpx.get(f"{reranker.url}/status").json()["active_jobs"] if j["kind"] == "rerank"]
        return bool(seen) or not call.is_alive()

    wait_until(shown_or_over, timeout=60, interval=0.02, message="the rerank job never showed in /status")
    assert seen and seen[0]["model"] == RERANKER and seen[0]["total"] == 2000, seen
    assert httpx.post(f"{reranker.url}/cancel/rerank-job-1").json() == {"cancelled": True}
    call.join()
    assert outcome[0].status_code == 499, outcome[0].text
    assert httpx.get(f"{reranker.url}/status").json()["active_jobs"] == []
    metrics = httpx.get(f"{reranker.url}/metrics").text
    assert 'gpu_service_requests_total{endpoint="/v1/rerank",status="200"}' in metrics
    assert f'gpu_service_batch_size_count{{model="{RERANKER}"}}' in metrics
