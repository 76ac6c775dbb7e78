"""Identical inputs in one request are computed once and fanned out (gpu_service/scheduling/dedupe.py).

Two copies of a text in one request used to be run as two items; in different padded
batches they got vectors that differ in the last bits (on an Intel Xeon even in one
batch), so equal documents did not score equal and ranked by rounding noise. The
service below cuts every request into batches of two, which puts copies in different
layouts on any CPU: the old code fails these tests here, the fanned-out results are
bit-identical, so exact equality is the right check (it is the same computation).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess

LONG = "a long sentence about the history of graphics processors and their use in machine learning " * 3
DUP = "A man is eating food."
SHORT = "Hi."


@process_fixture(scope="module")
def small_batches() -> Iterator[ServiceProcess]:
    svc = ServiceProcess(env={"GPU_MAX_BATCH_SIZE": "2"}).start()
    yield svc
    svc.stop()


def items_run(svc: ServiceProcess, model: str) -> float:
    """Items the model's batches have run so far (the sum of the batch-size histogram)."""
    prefix = f'gpu_service_batch_size_sum{{model="{model}"}}'
    for line in httpx.get(f"{svc.url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_equal_texts_get_bit_identical_vectors_and_run_once(small_batches: ServiceProcess) -> None:
    before = items_run(small_batches, "all-MiniLM-L6-v2")
    # Sorted by length, the old code ran [LONG, DUP] and [DUP, SHORT]: the copies padded differently.
    r = httpx.post(f"{small_batches.url}/embed", json={"texts": [LONG, DUP, SHORT, DUP]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4
    vectors = body["embeddings"]
    assert vectors[1] == vectors[3], "the same text in one request must get the same vector"
    assert vectors[0] != vectors[1] and vectors[2] != vectors[1]
    assert items_run(small_batches, "all-MiniLM-L6-v2") - before == 3, "the copy must not be run again"

    # Texts the model sees alike (it lower-cases; the tokenizer drops extra spaces) run once too.
    before = items_run(small_batches, "all-MiniLM-L6-v2")
    alike = httpx.post(f"{small_batches.url}/embed", json={"texts": [DUP, LONG, DUP.upper(), f"  {DUP}  "]}).json()
    assert alike["embeddings"][0] == alike["embeddings"][2] == alike["embeddings"][3]
    assert items_run(small_batches, "all-MiniLM-L6-v2") - before == 2


def test_openai_endpoint_fans_out_too(small_batches: ServiceProcess) -> None:
    r = httpx.post(f"{small_batches.url}/v1/embeddings", json={"input": [LONG, DUP, SHORT, DUP]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2, 3] and data[1]["embedding"] == data[3]["embedding"]
    # usage counts every input's tokens, as a client billing by input expects
    single = httpx.post(f"{small_batches.url}/v1/embeddings", json={"input": DUP}).json()["usage"]["prompt_tokens"]
    assert r.json()["usage"]["prompt_tokens"] > 2 * single


def test_equal_documents_rank_in_input_order(small_batches: ServiceProcess) -> None:
    docs = [DUP, LONG, DUP, SHORT]
    body = httpx.post(f"{small_batches.url}/similarity",
                      json={"texts": docs, "query": "Someone has a meal.", "top_k": 4}).json()
    assert body["scores"][0] == body["scores"][2]
    assert [m["index"] for m in body["matches"]][:2] == [0, 2], "equal scores rank in input order"
    assert body["count"] == 5

    matrix = httpx.post(f"{small_batches.url}/similarity", json={"mode": "matrix", "texts": docs}).json()["matrix"]
    assert matrix[0] == matrix[2] and [row[0] for row in matrix] == [row[2] for row in matrix]

    pairs = httpx.post(f"{small_batches.url}/similarity",
                       json={"mode": "pairs", "texts": [DUP, LONG, DUP], "texts_b": [SHORT, SHORT, SHORT]}).json()
    assert pairs["scores"][0] == pairs["scores"][2]


def test_equal_bertscore_pairs_score_identically(small_batches: ServiceProcess) -> None:
    """Sentences are embedded once (they always were); a repeated pair is also matched once.
    The copy sits in another greedy-matching chunk (256 pairs each) with other padding."""
    pair = ("The dog chased a ball in the park.", "A dog was running after a ball.")
    fillers = [(f"filler candidate {i} " + "word " * (40 if i == 5 else 1), f"filler reference {i}") for i in range(300)]
    pairs = [pair, *fillers, pair]
    before = items_run(small_batches, "all-MiniLM-L6-v2@L6")
    r = httpx.post(f"{small_batches.url}/bertscore", timeout=120,
                   json={"candidates": [c for c, _ in pairs], "references": [ref for _, ref in pairs]})
    assert r.status_code == 200, r.text
    body = r.json()
    for field in ("precision", "recall", "f1"):
        assert body[field][0] == body[field][-1]
    assert items_run(small_batches, "all-MiniLM-L6-v2@L6") - before == 2 + 2 * 300
