"""Embeddings (`/embed`, OpenAI's `/v1/embeddings` and `/v1/models`) and similarity (`/similarity`,
computed from the same embedding model on this host, so no vector travels)."""
