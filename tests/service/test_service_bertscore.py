"""BERTScore over real HTTP: a `gpu-service` process, the bundled model at layer 6, and the
`bert-score` package's own `BERTScorer` as the reference."""

from __future__ import annotations

import httpx
import pytest
import torch

from tests.support.service_probes import batches_run
from tests.support.services import ServiceProcess

CANDS = ["The cat sat on the mat.", "A quick brown fox jumps.", "GPUs make embeddings fast.",
         "I love Paris in the spring.", "The cat sat on the mat."]
REFS = ["A cat was sitting on the mat.", "The fast brown fox leaps.", "Embeddings are quick on a GPU.",
        "Paris is lovely in spring.", "There is a cat on the mat."]


@pytest.mark.parametrize("idf", [False, True])
def test_bertscore_equals_bert_score_package(service: ServiceProcess, scorer_factory, idf: bool) -> None:
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": CANDS, "references": REFS, "idf": idf})
    assert r.status_code == 200, r.text
    body = r.json()
    kwargs = {"idf": True, "idf_sents": REFS} if idf else {}
    p, rc, f = scorer_factory(**kwargs).score(CANDS, REFS)
    for ours, theirs in ((body["precision"], p), (body["recall"], rc), (body["f1"], f)):
        assert torch.allclose(torch.tensor(ours), theirs, atol=1e-5)
    assert body["hash"].startswith("all-MiniLM-L6-v2_L6_" + ("idf" if idf else "no-idf"))
    assert abs(body["mean"]["f1"] - float(f.mean())) < 1e-5


def test_bertscore_idf_from_given_sentences(service: ServiceProcess, scorer_factory) -> None:
    idf_sents = REFS + CANDS + ["extra document about nothing in particular"]
    body = httpx.post(f"{service.url}/bertscore", json={
        "candidates": CANDS, "references": REFS, "idf": True, "idf_sentences": idf_sents}).json()
    _, _, f = scorer_factory(idf=True, idf_sents=idf_sents).score(CANDS, REFS)
    assert torch.allclose(torch.tensor(body["f1"]), f, atol=1e-5)


def test_bertscore_without_baseline_is_a_clear_error(service: ServiceProcess) -> None:
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": ["a"], "references": ["b"],
                                                     "rescale_with_baseline": True})
    assert r.status_code == 400 and "no baseline file" in r.json()["detail"]


def test_bertscore_long_texts_are_truncated_not_crashed(service: ServiceProcess) -> None:
    long = "word " * 2000
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": [long], "references": ["word"]})
    assert r.status_code == 200, r.text
    assert r.json()["truncated"] == 1


def test_bertscore_repeated_references_are_cached(service: ServiceProcess) -> None:
    refs = [f"reference number {i} about caching" for i in range(6)]
    first = httpx.post(f"{service.url}/bertscore", json={"candidates": refs[::-1], "references": refs}).json()
    before = batches_run(service.url, "all-MiniLM-L6-v2@L6")
    again = httpx.post(f"{service.url}/bertscore", json={"candidates": refs[::-1], "references": refs}).json()
    assert again["f1"] == first["f1"]  # exact: the cached embeddings, matched in the same layout
    # every sentence was cached: the second call ran no batch on the BERTScore model
    assert batches_run(service.url, "all-MiniLM-L6-v2@L6") == before


def test_bertscore_unknown_layers_needed(service: ServiceProcess) -> None:
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": ["a"], "references": ["b"],
                                                     "model_type": "sentence-transformers/all-mpnet-base-v2"})
    assert r.status_code == 422 and "num_layers is required" in r.json()["detail"]


def test_lang_picks_bert_scores_model_for_that_language(service: ServiceProcess) -> None:
    """No model named, lang=de: bert-score's choice for German (not served here, so refused by name)."""
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": ["Hallo Welt"], "references": ["Hallo"], "lang": "de"})
    assert r.status_code in (403, 404) and "bert-base-multilingual-cased" in r.json()["detail"]
    r = httpx.post(f"{service.url}/bertscore", json={"candidates": ["hello"], "references": ["hi"], "lang": "en"})
    assert r.status_code == 200 and r.json()["model"] == "all-MiniLM-L6-v2"


def test_undefined_bertscore_is_a_clear_error_not_a_crash(service: ServiceProcess, scorer_factory) -> None:
    """Found by fuzzing: idf from a single reference gives every token weight 0, and bert-score
    returns NaN (which JSON cannot carry). The service says why instead of failing with 500."""
    import math as m

    _, r, _ = scorer_factory(idf=True, idf_sents=["the only reference"]).score(["a candidate"], ["the only reference"])
    assert m.isnan(float(r[0])), "bert-score's own answer is NaN here"
    resp = httpx.post(f"{service.url}/bertscore", json={"candidates": ["a candidate"],
                                                        "references": ["the only reference"], "idf": True})
    assert resp.status_code == 422 and "weight 0" in resp.json()["detail"] and "idf_sentences" in resp.json()["detail"]
