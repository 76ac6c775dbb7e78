"""Reranking across the pool: the shards' scores (each answer checked by its protocol) merged into one ranking.

Every shard scores all of its documents (a host is never asked for its own top_n), so the
merge sees every score and its `top_n` is exactly what one host scoring everything would
return: sorted by score, ties broken by the document's global index, as the service does.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpu_protocol.rerank import RerankDocument, RerankRequest, RerankResponse, RerankResult, RerankUsage


def merge(request: RerankRequest, shards: Sequence[tuple[int, RerankResponse]]) -> RerankResponse:
    """The shards' answers (each with the global index of its first document) as one ranking:
    best first by score, ties by global index, cut at `request.top_n`."""
    texts = request.texts()
    scored = [(r.relevance_score, offset + r.index) for offset, answer in shards for r in answer.results]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    best = scored[: request.top_n] if request.top_n is not None else scored
    results = [
        RerankResult(index=index, relevance_score=score,
                     document=RerankDocument(text=texts[index]) if request.return_documents else None)
        for score, index in best
    ]
    answers = [answer for _, answer in shards]
    return RerankResponse(
        results=results, model=answers[0].model,
        usage=RerankUsage(total_tokens=sum(a.usage.total_tokens for a in answers)),
        truncated=sum(a.truncated for a in answers),
    )
