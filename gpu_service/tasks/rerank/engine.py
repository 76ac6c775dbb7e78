"""Reranking with a cross-encoder (sentence-transformers `CrossEncoder`), in the batcher's two stages.

`prepare()` tokenizes (query, document) pairs on the model's preprocessing thread the way
`CrossEncoder.predict` does (one sequence per pair, `longest_first` truncation at the
model's maximum length), flagging the pairs that were cut; `run()` pads a batch and
returns the model's logits. The activation comes after, in `relevance()`, so a client
can ask for the raw logits instead.

Only sequence-classification models with one label are rerankers here. That is
decided from `config.json` before any weights load, so naming an embedding model as a
reranker is a clear 422, not a randomly initialised classification head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gpu_service.errors import Unprocessable
from gpu_service.models.engine import EngineDetails
from gpu_service.models.facts import SEQUENCE_CLASSIFICATION, parameter_bytes
from gpu_service.models.padding import pad_batch
from gpu_service.models.resolve import ResolvedModel


@dataclass(frozen=True)
class TokenizedPair:
    ids: list[int]
    type_ids: list[int] | None
    """Segment ids (0 for the query, 1 for the document) where the model takes them."""
    truncated: bool

    @property
    def cost(self) -> int:
        return len(self.ids)


def not_a_reranker(name: str, architectures: list[str], num_labels: int) -> str | None:
    """Why `name` cannot rerank, or None if it can."""
    if not any(a.endswith(SEQUENCE_CLASSIFICATION) for a in architectures):
        named = ", ".join(architectures) or "no architecture"
        return (
            f"model {name!r} is not a reranker: its config.json names {named}, not a cross-encoder "
            f"(*{SEQUENCE_CLASSIFICATION}); name a cross-encoder such as BAAI/bge-reranker-base, or use /embed for this model"
        )
    if num_labels != 1:
        return (
            f"model {name!r} is a classifier with {num_labels} labels; a reranker scores relevance with "
            "exactly one label (e.g. BAAI/bge-reranker-base, cross-encoder/ms-marco-MiniLM-L6-v2)"
        )
    return None


class RerankEngine:
    concurrency = 1
    """One batch at a time (see Engine)."""

    def __init__(self, resolved: ResolvedModel, device: torch.device, fp16: bool) -> None:
        from sentence_transformers import CrossEncoder
        from transformers import AutoConfig

        self.name = resolved.name
        self.device = device
        # Only the config (a small file) is read before deciding; trust_remote_code stays off.
        config = AutoConfig.from_pretrained(resolved.source, trust_remote_code=False)
        problem = not_a_reranker(resolved.name, list(config.architectures or []), int(config.num_labels))
        if problem is not None:
            raise Unprocessable(problem)
        self.model = CrossEncoder(resolved.source, device=str(device), trust_remote_code=False)
        if fp16 and device.type == "cuda":
            self.model.half()
        self.model.eval()
        self._tokenizer: Any = self.model[0].tokenizer
        self.max_length = int(self.model.max_seq_length)
        self._pad_id = self._tokenizer.pad_token_id or 0
        prompt_name = self.model.default_prompt_name
        self._prompt: str | None = self.model.prompts.get(prompt_name) if prompt_name else None
        self.memory_bytes = parameter_bytes(self.model)
        self.padded = True

    # ---- preprocessing thread ------------------------------------------------------------

    def prepare(self, query: str, documents: list[str], doc_tokens: int | None = None) -> list[TokenizedPair]:
        """Token ids of each (query, document) pair, cut at the model's maximum length (flagged); with
        `doc_tokens`, each document cut to that many tokens first (not flagged: the caller asked)."""
        if doc_tokens is not None:
            documents = self._cut(documents, doc_tokens)
        if self._prompt:  # CrossEncoder.predict prepends the model's default prompt to the query
            query = self._prompt + query
        queries = [query] * len(documents)
        enc = self._tokenizer(queries, documents, truncation="longest_first", max_length=self.max_length, verbose=False)
        rows: list[list[int]] = enc["input_ids"]
        type_rows: list[list[int]] | None = enc.get("token_type_ids")
        # Only a pair that fills the maximum can have been cut: count those again, uncut.
        full = [i for i, ids in enumerate(rows) if len(ids) >= self.max_length]
        truncated: set[int] = set()
        if full:
            whole = self._tokenizer([query] * len(full), [documents[i] for i in full], verbose=False)["input_ids"]
            truncated = {i for i, ids in zip(full, whole, strict=True) if len(ids) > self.max_length}
        return [
            TokenizedPair(ids, type_rows[i] if type_rows is not None else None, truncated=i in truncated)
            for i, ids in enumerate(rows)
        ]

    def _cut(self, documents: list[str], tokens: int) -> list[str]:
        """Each document as the text of its first `tokens` tokens (unchanged when it has no more)."""
        rows: list[list[int]] = self._tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]
        return [doc if len(ids) <= tokens else self._tokenizer.decode(ids[:tokens])
                for doc, ids in zip(documents, rows, strict=True)]

    # ---- model thread --------------------------------------------------------------------

    def run(self, batch: list[TokenizedPair]) -> list[float]:
        """The logit of each pair in one batch."""
        type_ids = [item.type_ids for item in batch] if batch[0].type_ids is not None else None
        padded = pad_batch([item.ids for item in batch], self._pad_id, type_ids)
        features: dict[str, Any] = {k: v.to(self.device, non_blocking=True) for k, v in padded.items()}
        with torch.inference_mode():
            scores = self.model(features)["scores"]
        logits: list[float] = scores.float().reshape(len(batch)).cpu().tolist()
        return logits

    def details(self) -> EngineDetails:
        return EngineDetails()

    def close(self) -> None:
        self.model.to("cpu")
        del self.model


def relevance(logits: list[float]) -> list[float]:
    """Scores in [0, 1]: the sigmoid of each logit, in float32 as `CrossEncoder.predict` computes it."""
    return torch.sigmoid(torch.tensor(logits, dtype=torch.float32)).tolist()
