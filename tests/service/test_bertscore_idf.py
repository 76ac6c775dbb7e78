"""idf BERTScore computed once per call: hosts count document frequencies per chunk
(`POST /bertscore/idf`), the bridge adds the counts up and sends the total (`idf_counts`)
with every shard, so any number of pairs scores as one `BERTScorer(idf_sents=...)` would."""

from __future__ import annotations

import itertools

import httpx
import pytest
import torch
from mcp import Client

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from tests.support.services import ServiceProcess, start_together

ADJECTIVES = ["red", "blue", "green", "small", "large", "quiet", "fast", "old", "new", "bright"]
NOUNS = ["cat", "dog", "car", "house", "tree", "river", "book", "song", "city", "field"]
VERBS = ["runs", "sleeps", "shines", "waits", "grows", "falls", "sings", "moves", "stands", "turns"]


def corpus(pairs: int) -> tuple[list[str], list[str]]:
    """Short sentences (cheap on a CPU), 1,000 distinct references repeated unevenly, so token
    document frequencies differ, and candidates that share some of their words."""
    phrases = [f"{a} {n} {v}" for a, n, v in itertools.product(ADJECTIVES, NOUNS, VERBS)]
    references = [f"the {phrases[(i * 37) % 1000]}" for i in range(pairs)]
    candidates = [f"a {phrases[(i * 53 + 11) % 700]} today" for i in range(pairs)]
    return candidates, references


@pytest.mark.slow
@pytest.mark.anyio
async def test_idf_over_more_pairs_than_one_request_takes_equals_bert_score(service_factory, scorer_factory) -> None:
    """600 pairs over two hosts that take 256 texts a request (GPU_MAX_TEXTS): more references than a host
    takes in one request, so the idf table is counted in parts and added up (4,096 is the default limit;
    the property is the same at a tenth of the size)."""
    candidates, references = corpus(600)
    limit = {"GPU_MAX_TEXTS": "256"}
    hosts = start_together([service_factory(env=limit), service_factory(env=limit)])
    config = {"hosts": [{"name": f"h{i}", "url": s.url} for i, s in enumerate(hosts)], "shardSize": 128,
              "loadBalancing": "round-robin", "timeout": 300}
    async with Bridge(parse_config(config, "t"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as c:
            result = await c.call_tool("gpu_bertscore", {"candidates": candidates, "references": references,
                                                         "idf": True, "model": "all-MiniLM-L6-v2"})
    assert not result.is_error, result.content[0].text
    ours = result.structured_content
    assert ours["hosts"] == ["h0", "h1"] and ours["hash"].startswith("all-MiniLM-L6-v2_L6_idf")
    p, r, f = scorer_factory(idf=True, idf_sents=references).score(candidates, references, batch_size=256)
    # Tolerance, not equality: the hosts batch the sentences differently from bert-score.
    for got, want in ((ours["precision"], p), (ours["recall"], r), (ours["f1"], f)):
        assert torch.allclose(torch.tensor(got), want, atol=1e-4)


def test_idf_counts_endpoint_and_idf_counts_field(service: ServiceProcess, scorer_factory) -> None:
    """Counts of two chunks, added up, score exactly as idf_sentences over both chunks."""
    candidates, references = corpus(12)
    url = service.url
    halves = [references[:5], references[5:]]
    answers = [httpx.post(f"{url}/bertscore/idf", json={"sentences": half}) for half in halves]
    assert all(a.status_code == 200 for a in answers), answers[0].text
    first, second = (a.json() for a in answers)
    assert first["model"] == "all-MiniLM-L6-v2" and (first["documents"], second["documents"]) == (5, 7)
    counts = {k: first["counts"].get(k, 0) + second["counts"].get(k, 0) for k in {*first["counts"], *second["counts"]}}
    merged = {"documents": 12, "counts": counts}

    by_counts = httpx.post(f"{url}/bertscore", json={
        "candidates": candidates, "references": references, "idf": True, "idf_counts": merged})
    by_sentences = httpx.post(f"{url}/bertscore", json={
        "candidates": candidates, "references": references, "idf": True, "idf_sentences": references})
    assert by_counts.status_code == 200, by_counts.text
    assert by_counts.json()["f1"] == by_sentences.json()["f1"]
    _, _, f = scorer_factory(idf=True, idf_sents=references).score(candidates, references)
    assert torch.allclose(torch.tensor(by_counts.json()["f1"]), f, atol=1e-5)

    for body, words in [
        ({"idf_counts": merged}, "idf_counts is only used with idf=true"),
        ({"idf": True, "idf_counts": merged, "idf_sentences": references}, "not both"),
        ({"idf": True, "idf_counts": {"documents": 2, "counts": {"7": 3}}}, "between 1 and documents (2)"),
    ]:
        bad = httpx.post(f"{url}/bertscore", json={"candidates": ["a"], "references": ["b"], **body})
        assert bad.status_code == 422 and words in bad.json()["detail"], bad.text
