"""A BERT encoder run without padding (the "unpad" trick of TEI and FlashAttention's BERT).

A batch of texts of different lengths is normally padded to its longest text, and every layer's
linear maps (nearly all of the compute) then run on the padding too. Here the tokens of a batch
are packed into one [tokens, hidden] matrix: embeddings, the Q/K/V and output projections, the
feed-forward and the layer norms run on real tokens only. Attention, which mixes the tokens of one
text, runs once per *run* of consecutive texts of equal length: their tokens are already a
[texts, length, hidden] block of the packed matrix (a view, no copy), so attention needs no mask
and sees no padding either. The scheduler hands over batches sorted by length, so a batch of 64
mixed texts has a few dozen runs; on a CPU this cut attention's time by ~30% against one padded,
masked call per layer (bench/README.md, "What each engine change paid"). On a GPU, where each call
is a kernel launch and a batch holds up to 256 texts, attention stays one padded call per layer
with a mask (`per_run=False`), the layout TEI's and FlashAttention's varlen kernels avoid with a
kernel of their own.

The arithmetic per token is the one of `transformers`' `BertModel` (the same modules, weights and
SDPA attention), so vectors agree with it to float rounding; `tests/unit/test_unpadded.py` checks them
against `SentenceTransformer.encode`. Models other than a plain BERT encoder keep the padded path.
Padding appears once, at the end, for the model's pooling module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F


def supports(auto_model: Any) -> bool:
    """True for a plain BERT encoder (MiniLM, BGE, E5, GTE and many more are one)."""
    from transformers.models.bert.modeling_bert import BertModel

    config = auto_model.config
    return (
        type(auto_model) is BertModel
        and not config.is_decoder
        and getattr(config, "position_embedding_type", "absolute") in (None, "absolute")
        and not getattr(config, "add_cross_attention", False)
    )


def attention_per_run(device: torch.device) -> bool:
    """A call per run of equal lengths on a CPU; one padded, masked call on an accelerator (a kernel
    launch per run would cost more there than the padding)."""
    return device.type == "cpu"


class Packed:
    """Where the real tokens of a batch sit, packed text after text."""

    def __init__(self, lengths: list[int], device: torch.device, per_run: bool | None = None) -> None:
        """`per_run`: attention per run of equal lengths (the default on a CPU), or one padded
        call with a mask (the default on an accelerator)."""
        self.texts = len(lengths)
        self.longest = max(lengths)
        lengths_t = torch.tensor(lengths, device=device)
        columns = torch.arange(self.longest, device=device)
        self.mask = columns[None, :] < lengths_t[:, None]  # [texts, longest], True on real tokens
        self.index = self.mask.flatten().nonzero().squeeze(1)  # padded position of each real token
        self.positions = columns.expand(self.texts, -1)[self.mask]  # each token's position in its text
        per_run = attention_per_run(device) if per_run is None else per_run
        self.runs = equal_length_runs(lengths) if per_run else None

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """[tokens, width] -> [texts, longest, width], zeros on the padding."""
        out = packed.new_zeros(self.texts * self.longest, packed.shape[-1])
        out[self.index] = packed
        return out.view(self.texts, self.longest, -1)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """[texts, longest, width] -> [tokens, width]."""
        return padded.reshape(self.texts * self.longest, -1)[self.index]


class Run(NamedTuple):
    """`texts` consecutive texts of `length` tokens each, from packed row `start` on."""

    start: int
    texts: int
    length: int

    @property
    def rows(self) -> slice:
        return slice(self.start, self.start + self.texts * self.length)


def equal_length_runs(lengths: list[int]) -> list[Run]:
    """The maximal runs of consecutive equal lengths (any order is correct; sorted is fewest runs)."""
    runs: list[Run] = []
    start = 0
    for length in lengths:
        last = runs[-1] if runs else None
        if last is not None and last.length == length:
            runs[-1] = last._replace(texts=last.texts + 1)
        else:
            runs.append(Run(start, 1, length))
        start += length
    return runs


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, packed: Packed, heads: int,
           scale: float) -> torch.Tensor:
    """Multi-head attention within each text, on packed [tokens, heads x width] rows."""
    width = query.shape[-1] // heads
    if packed.runs is None:  # one call on the padded layout; the mask keeps texts to their own tokens
        def padded(x: torch.Tensor) -> torch.Tensor:  # [texts, heads, longest, width]
            return packed.pad(x).view(packed.texts, packed.longest, heads, width).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(padded(query), padded(key), padded(value),
                                               attn_mask=packed.mask[:, None, None, :], scale=scale)
        return packed.unpad(mixed.transpose(1, 2).reshape(packed.texts, packed.longest, heads * width))
    out = []
    for run in packed.runs:
        def block(x: torch.Tensor, run: Run = run) -> torch.Tensor:  # [texts, heads, length, width], a view
            return x[run.rows].view(run.texts, run.length, heads, width).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(block(query), block(key), block(value), scale=scale)
        out.append(mixed.transpose(1, 2).reshape(run.texts * run.length, heads * width))
    return out[0] if len(out) == 1 else torch.cat(out)


def encode(bert: Any, sequences: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, Packed]:
    """The last hidden state of texts given as token ids, [texts, longest, hidden] with zeros on the
    padding, and their packing (its `mask` marks the real tokens). Call under no_grad/inference_mode."""
    packed = Packed([len(ids) for ids in sequences], device)
    ids = torch.tensor([token for text in sequences for token in text], dtype=torch.long).to(device)
    return token_embeddings(bert, ids, packed), packed


def token_embeddings(bert: Any, ids: torch.Tensor, packed: Packed) -> torch.Tensor:
    """The last hidden state, [texts, longest, hidden], as `BertModel` would give it for the padded
    batch whose real token ids, text after text, are `ids` (zeros on padding, which pooling ignores)."""
    embeddings = bert.embeddings
    # In BertEmbeddings' order: words + token type (0, as the padded path passes) + positions.
    hidden = embeddings.word_embeddings(ids) + embeddings.token_type_embeddings.weight[0]
    hidden = embeddings.LayerNorm(hidden + embeddings.position_embeddings(packed.positions))
    for layer in bert.encoder.layer:
        attention = layer.attention.self
        mixed = attend(attention.query(hidden), attention.key(hidden), attention.value(hidden), packed,
                       attention.num_attention_heads, attention.scaling)
        hidden = layer.attention.output(mixed, hidden)
        hidden = layer.output(layer.intermediate(hidden), hidden)
    return packed.pad(hidden)
