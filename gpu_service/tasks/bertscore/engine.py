"""BERTScore with the same numbers as the `bert_score` package, computed faster.

We reuse bert-score's own model loader, tokenizer, sentence encoding, idf and greedy
matching, so parity is by construction (and tested to 1e-5). What we change is the
plumbing around them:
- one engine per (model, layers), loaded once and kept (bert_score.score() reloads
  the model on every call);
- sentence embeddings stay on the device for the greedy matching (the package copies
  every embedding to the CPU and back);
- embeddings of sentences seen recently (typically references) are cached;
- sentences from concurrent requests share batches (see batching.py).
"""

from __future__ import annotations

import collections
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from gpu_protocol.bertscore import IdfCounts
from gpu_service.errors import BadRequest, Unprocessable
from gpu_service.models import unpadded
from gpu_service.models.engine import EngineDetails
from gpu_service.models.facts import parameter_bytes
from gpu_service.models.resolve import ResolvedModel, looks_like_path
from gpu_service.settings import BUNDLED_MODEL, BUNDLED_MODEL_LAYERS


def default_layers(model: str) -> int:
    """bert-score's tuned layer for `model`; 6 for the bundled MiniLM; else the caller must say."""
    from bert_score.utils import model2layers

    if model in model2layers:
        return int(model2layers[model])
    if model == BUNDLED_MODEL:
        return BUNDLED_MODEL_LAYERS
    raise Unprocessable(
        f"num_layers is required for model {model!r}: it is not in bert-score's table of tuned layers "
        "(pass num_layers)"
    )


def model_for_lang(lang: str) -> str:
    from bert_score.utils import lang2model

    return str(lang2model[lang.lower()])


def settings_hash(model: str, num_layers: int, idf: bool, rescale: bool, custom_baseline: bool) -> str:
    from bert_score.utils import get_hash

    return str(get_hash(model, num_layers, idf, rescale, custom_baseline, False))


@dataclass(frozen=True)
class EncodedSentence:
    ids: list[int]
    truncated: bool

    @property
    def cost(self) -> int:
        return len(self.ids)


class BertScoreEngine:
    concurrency = 1
    """One batch at a time (see Engine)."""

    def __init__(self, resolved: ResolvedModel, num_layers: int, device: torch.device, cache_tokens: int = 65_536):
        from bert_score.utils import get_model, get_tokenizer

        self.name = resolved.name
        self.num_layers = num_layers
        self.device = device
        self.tokenizer = get_tokenizer(resolved.source, use_fast=False)
        try:
            self.model = get_model(resolved.source, num_layers)
        except AssertionError as exc:  # bert-score checks num_layers with assert
            raise Unprocessable(str(exc)) from None
        self.model.to(device)
        self.max_length = int(min(self.tokenizer.model_max_length, 4096))
        self.memory_bytes = parameter_bytes(self.model)
        self.padded = not unpadded.supports(self.model)
        """A BERT encoder runs on real tokens only (unpadded.py), as for embeddings; others pad."""
        self._cache: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self._cache_tokens = 0
        self._cache_limit = cache_tokens

    # ---- preprocessing thread ------------------------------------------------------------

    def prepare(self, sentences: list[str]) -> list[EncodedSentence]:
        from bert_score.utils import sent_encode

        out = []
        for sentence in sentences:
            ids = sent_encode(self.tokenizer, sentence)
            out.append(EncodedSentence(ids, truncated=len(ids) >= self.max_length))
        return out

    def document_counts(self, sentences: list[str]) -> IdfCounts:
        """How many of `sentences` contain each token id: the first half of bert-score's
        get_idf_dict (its own `process`: the set of a sentence's ids), kept apart so the
        counts of several chunks or hosts can be merged before idf is taken."""
        from bert_score.utils import process

        counts = Counter(chain.from_iterable(process(s, self.tokenizer) for s in sentences))
        return IdfCounts(documents=len(sentences), counts=dict(counts))

    @staticmethod
    def idf_weights(frequencies: IdfCounts) -> dict[int, float]:
        """The second half of bert-score's get_idf_dict: log((M + 1) / (df + 1)), and log(M + 1)
        for a token no sentence contains (tested equal to `BERTScorer(idf_sents=...)`)."""
        documents = frequencies.documents
        weights: dict[int, float] = defaultdict(lambda: math.log(documents + 1))
        weights.update({token: math.log((documents + 1) / (df + 1)) for token, df in frequencies.counts.items()})
        return weights

    def uniform_weights(self) -> dict[int, float]:
        """bert-score's weights without idf: 1 for every token, 0 for [SEP] and [CLS]."""
        weights: dict[int, float] = defaultdict(lambda: 1.0)
        weights[self.tokenizer.sep_token_id] = 0
        weights[self.tokenizer.cls_token_id] = 0
        return weights

    # ---- model thread --------------------------------------------------------------------

    def run(self, batch: list[EncodedSentence]) -> list[torch.Tensor]:
        """Token embeddings per sentence (the last of the model's `num_layers` layers, as bert-score's
        `bert_encode` gives them), left on the device."""
        from bert_score.utils import bert_encode, padding

        if not self.padded:
            with torch.no_grad():
                hidden, _ = unpadded.encode(self.model, [s.ids for s in batch], self.device)
            return [hidden[i, : s.cost] for i, s in enumerate(batch)]

        padded, lengths, mask = padding([s.ids for s in batch], self.tokenizer.pad_token_id, dtype=torch.long)
        embedding = bert_encode(self.model, padded.to(self.device), attention_mask=mask.to(self.device))
        return [embedding[i, : int(lengths[i])] for i in range(len(batch))]

    def greedy_match(
        self,
        cand_emb: list[torch.Tensor],
        cand_ids: list[list[int]],
        ref_emb: list[torch.Tensor],
        ref_ids: list[list[int]],
        weights: dict[int, float],
        batch_size: int = 256,
    ) -> torch.Tensor:
        """[n, 3] precision/recall/F1 on the CPU, computed on the device as bert-score does."""
        from bert_score.utils import greedy_cos_idf

        def stack(embs: list[torch.Tensor], ids: list[list[int]]) -> tuple[torch.Tensor, ...]:
            emb = pad_sequence(embs, batch_first=True, padding_value=2.0)
            idf = pad_sequence(
                [torch.tensor([weights[t] for t in seq], dtype=torch.float) for seq in ids], batch_first=True
            ).to(self.device)
            lengths = torch.tensor([len(seq) for seq in ids])
            mask = (torch.arange(emb.size(1)).expand(len(ids), -1) < lengths.unsqueeze(1)).to(self.device)
            return emb, mask, idf

        out = []
        with torch.no_grad():
            for start in range(0, len(cand_emb), batch_size):
                end = start + batch_size
                ref = stack(ref_emb[start:end], ref_ids[start:end])
                hyp = stack(cand_emb[start:end], cand_ids[start:end])
                p, r, f = greedy_cos_idf(*ref, *hyp)
                out.append(torch.stack((p, r, f), dim=-1).cpu())
        return torch.cat(out, dim=0)

    # ---- embedding cache (event loop only) -----------------------------------------------

    def cached(self, sentence: str) -> torch.Tensor | None:
        emb = self._cache.get(sentence)
        if emb is not None:
            self._cache.move_to_end(sentence)
        return emb

    def remember(self, sentence: str, emb: torch.Tensor) -> None:
        if sentence in self._cache or emb.size(0) > self._cache_limit:
            return
        self._cache[sentence] = emb
        self._cache_tokens += emb.size(0)
        while self._cache_tokens > self._cache_limit:
            _, old = self._cache.popitem(last=False)
            self._cache_tokens -= old.size(0)

    def details(self) -> EngineDetails:
        return EngineDetails()

    def close(self) -> None:
        self._cache.clear()
        self.model.to("cpu")
        del self.model


def baseline(model: str, lang: str, num_layers: int, extra_dirs: list[str]) -> tuple[torch.Tensor, bool]:
    """bert-score's baseline (P, R, F) for `model`/`lang` at `num_layers`, and whether it is custom."""
    import bert_score
    import pandas as pd

    if looks_like_path(model):  # a model from a local directory: its baseline is named after the folder
        model = Path(model).name
    candidates = [(Path(d) / lang / f"{model}.tsv", True) for d in extra_dirs]
    candidates.append((Path(os.path.dirname(bert_score.__file__)) / "rescale_baseline" / lang / f"{model}.tsv", False))
    for path, custom in candidates:
        if path.is_file():
            table = pd.read_csv(path)
            if num_layers >= len(table):
                raise BadRequest(f"baseline {path.name} for lang {lang!r} has no row for layer {num_layers}")
            return torch.from_numpy(table.iloc[num_layers].to_numpy())[1:].float(), custom
    raise BadRequest(
        f"rescale_with_baseline: no baseline file for model {model!r} and lang {lang!r} "
        "(bert-score ships baselines for its own models; add one under BERTSCORE_BASELINE_DIRS/<lang>/<model>.tsv)"
    )
