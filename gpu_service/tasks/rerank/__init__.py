"""Reranking with a cross-encoder: Cohere's and Jina's `/v1/rerank`, Cohere's `/v2/rerank` and
text-embeddings-inference's `/rerank`, one engine and one batcher."""
