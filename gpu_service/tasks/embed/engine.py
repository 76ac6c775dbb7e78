"""Sentence embeddings with sentence-transformers, split into the two stages the batcher needs.

`prepare()` tokenizes (on the preprocessing thread, which owns the tokenizer) and
`run()` pads and runs the model (on the model's worker thread). Keeping the two
apart lets tokenization of the next request overlap with the model's work on the
current batch, and means no tokenizer is ever used by two threads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from gpu_service.errors import Unprocessable
from gpu_service.models import unpadded
from gpu_service.models.engine import EngineDetails
from gpu_service.models.facts import is_cross_encoder, parameter_bytes
from gpu_service.models.padding import pad_batch
from gpu_service.models.resolve import ResolvedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenizedText:
    ids: list[int]
    truncated: bool

    @property
    def cost(self) -> int:
        return len(self.ids)


class EmbeddingEngine:
    concurrency = 1
    """One batch at a time (see Engine)."""

    def __init__(self, resolved: ResolvedModel, device: torch.device, fp16: bool) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = resolved.name
        self.device = device
        if resolved.origin != "hub" and is_cross_encoder(resolved.source):
            # As an embedding model it would silently give vectors it was never trained to produce.
            raise Unprocessable(
                f"model {self.name!r} is a cross-encoder (a reranker), not an embedding model: "
                "rerank with it at /v1/rerank or /rerank, or name an embedding model"
            )
        # trust_remote_code stays off: a model that needs custom code is refused at load.
        self.model = SentenceTransformer(resolved.source, device=str(device), trust_remote_code=False)
        if fp16:  # decided per device by device.use_half_precision
            self.model.half()
        self.model.eval()
        first: Any = self.model[0]
        self._tokenizer: Any = first.tokenizer
        if self._tokenizer is None:
            raise ValueError(f"model {self.name!r} has no text tokenizer; only text embedding models are served")
        self._lower = bool(getattr(first, "do_lower_case", False))
        self.max_length = int(self.model.max_seq_length or self._tokenizer.model_max_length)
        self._pad_id = self._tokenizer.pad_token_id or 0
        self._wants_token_types = "token_type_ids" in self._tokenizer.model_input_names
        dimension_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimensions = int(dimension_of() or 0)
        self.prompts: dict[str, str] = dict(getattr(self.model, "prompts", {}) or {})
        self.memory_bytes = parameter_bytes(self.model)
        bert = getattr(first, "auto_model", None)
        runs_unpadded = bert is not None and unpadded.supports(bert) and type(first).__name__ == "Transformer"
        self.padded = not runs_unpadded
        """A BERT encoder runs on real tokens only (unpadded.py); other models pad their batches."""
        self._bert = bert if runs_unpadded else None

    # ---- preprocessing thread ------------------------------------------------------------

    def prompt_for(self, prompt_name: str | None, prompt: str | None) -> str | None:
        if prompt is not None:
            return prompt
        if prompt_name is None:
            return None
        if prompt_name not in self.prompts:
            allowed = ", ".join(sorted(self.prompts)) or "none"
            raise Unprocessable(f"prompt_name {prompt_name!r} is not defined by model {self.name!r}; defined: {allowed}")
        return self.prompts[prompt_name]

    def prepare(self, texts: list[str], prompt: str | None) -> list[TokenizedText]:
        """Token ids per text, cut to the model's maximum length (flagged, never silently)."""
        if prompt:
            texts = [prompt + t for t in texts]
        if self._lower:
            texts = [t.lower() for t in texts]
        # One pass: rows past the first for a text are its overflow, i.e. it was truncated.
        enc = self._tokenizer(
            texts, truncation=True, max_length=self.max_length, return_overflowing_tokens=True, verbose=False
        )
        mapping = enc.get("overflow_to_sample_mapping") or list(range(len(texts)))
        out: list[TokenizedText | None] = [None] * len(texts)
        for row, sample in enumerate(mapping):
            if out[sample] is None:
                out[sample] = TokenizedText(enc["input_ids"][row], truncated=False)
            else:
                out[sample] = TokenizedText(out[sample].ids, truncated=True)  # type: ignore[union-attr]
        return [item for item in out if item is not None]

    # ---- model thread --------------------------------------------------------------------

    def run(self, batch: list[TokenizedText]) -> torch.Tensor:
        """Embeddings of one batch as a float32 CPU tensor [len(batch), dimensions]."""
        if self._bert is not None:
            return self._run_unpadded(batch)
        ids = [item.ids for item in batch]
        padded = pad_batch(ids, self._pad_id, [None] * len(batch) if self._wants_token_types else None)
        features: dict[str, Any] = {k: v.to(self.device, non_blocking=True) for k, v in padded.items()}
        with torch.inference_mode():
            out = self.model.forward(features)["sentence_embedding"]
        return out.float().cpu()

    def _run_unpadded(self, batch: list[TokenizedText]) -> torch.Tensor:
        """The transformer on real tokens only, then the model's own pooling (and any modules after)."""
        with torch.inference_mode():
            hidden, packed = unpadded.encode(self._bert, [item.ids for item in batch], self.device)
            features: dict[str, Any] = {"attention_mask": packed.mask.long(), "token_embeddings": hidden}
            for module in list(self.model)[1:]:
                features = module(features)
            out = features["sentence_embedding"]
        return out.float().cpu()

    def details(self) -> EngineDetails:
        """/info: the vector width, tokens read per text, and the prompts that add text."""
        return EngineDetails(dimensions=self.dimensions, max_tokens=self.max_length,
                             prompts=sorted(name for name, text in self.prompts.items() if text))

    def close(self) -> None:
        self.model.to("cpu")
        del self.model


def postprocess(vectors: torch.Tensor, normalize: bool, dimensions: int | None) -> torch.Tensor:
    """Matryoshka truncation, then optional L2 normalisation (so truncated vectors are renormalised)."""
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return vectors
