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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpu_service.embedding import parameter_bytes
from gpu_service.errors import Unprocessable
from gpu_service.resolve import ResolvedModel

_HEAD = "ForSequenceClassification"


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
    if not any(a.endswith(_HEAD) for a in architectures):
        named = ", ".join(architectures) or "no architecture"
        return (
            f"model {name!r} is not a reranker: its config.json names {named}, not a cross-encoder "
            f"(*{_HEAD}); name a cross-encoder such as BAAI/bge-reranker-base, or use /embed for this model"
        )
    if num_labels != 1:
        return (
            f"model {name!r} is a classifier with {num_labels} labels; a reranker scores relevance with "
            "exactly one label (e.g. BAAI/bge-reranker-base, cross-encoder/ms-marco-MiniLM-L6-v2)"
        )
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_cross_encoder(source: str) -> bool:
    """Whether a local model directory holds a cross-encoder (reads two small files; False if unsure).

    sentence-transformers marks the cross-encoders it saves; older ones (and plain
    Hugging Face rerankers) are sequence-classification models without a modules.json."""
    directory = Path(source)
    st_config = _read_json(directory / "config_sentence_transformers.json")
    if isinstance(st_config, dict) and st_config.get("model_type") == "CrossEncoder":
        return True
    config = _read_json(directory / "config.json")
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not architectures:
        return False
    return all(str(a).endswith(_HEAD) for a in architectures) and not (directory / "modules.json").is_file()


class RerankEngine:
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

    def prepare(self, query: str, documents: list[str]) -> list[TokenizedPair]:
        """Token ids of each (query, document) pair, cut at the model's maximum length (flagged)."""
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

    # ---- model thread --------------------------------------------------------------------

    def run(self, batch: list[TokenizedPair]) -> list[float]:
        """The logit of each pair in one batch."""
        longest = max(item.cost for item in batch)
        input_ids = torch.full((len(batch), longest), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        type_ids = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            input_ids[row, : item.cost] = torch.tensor(item.ids, dtype=torch.long)
            attention[row, : item.cost] = 1
            if item.type_ids is not None:
                type_ids[row, : item.cost] = torch.tensor(item.type_ids, dtype=torch.long)
        features: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        if batch[0].type_ids is not None:
            features["token_type_ids"] = type_ids
        features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
        with torch.inference_mode():
            scores = self.model(features)["scores"]
        logits: list[float] = scores.float().reshape(len(batch)).cpu().tolist()
        return logits

    def details(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.model.to("cpu")
        del self.model


def relevance(logits: list[float]) -> list[float]:
    """Scores in [0, 1]: the sigmoid of each logit, in float32 as `CrossEncoder.predict` computes it."""
    return torch.sigmoid(torch.tensor(logits, dtype=torch.float32)).tolist()
