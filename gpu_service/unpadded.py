"""A BERT encoder run without padding (the "unpad" trick of TEI and FlashAttention's BERT).

A batch of texts of different lengths is normally padded to its longest text, and every layer's
linear maps (nearly all of the compute) then run on the padding too. Here the tokens of a batch
are packed into one [tokens, hidden] matrix: embeddings, the Q/K/V and output projections, the
feed-forward and the layer norms run on real tokens only. Only attention, which mixes tokens of
one text, sees them in a padded [texts, heads, longest, head] layout (with the padding masked),
and its share of the compute is small for short texts.

The arithmetic per token is the one of `transformers`' `BertModel` (the same modules, weights and
SDPA attention), so vectors agree with it to float rounding; `tests/test_unpadded.py` checks them
against `SentenceTransformer.encode`. Models other than a plain BERT encoder keep the padded path.
"""

from __future__ import annotations

from typing import Any

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


class Packed:
    """Where each real token of a batch sits in the padded [texts x longest] layout."""

    def __init__(self, lengths: list[int], device: torch.device) -> None:
        self.texts = len(lengths)
        self.longest = max(lengths)
        lengths_t = torch.tensor(lengths, device=device)
        columns = torch.arange(self.longest, device=device)
        self.mask = columns[None, :] < lengths_t[:, None]  # [texts, longest], True on real tokens
        self.index = self.mask.flatten().nonzero().squeeze(1)  # padded position of each real token
        self.positions = columns.expand(self.texts, -1)[self.mask]  # each token's position in its text

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """[tokens, width] -> [texts, longest, width], zeros on the padding."""
        out = packed.new_zeros(self.texts * self.longest, packed.shape[-1])
        out[self.index] = packed
        return out.view(self.texts, self.longest, -1)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """[texts, longest, width] -> [tokens, width]."""
        return padded.reshape(self.texts * self.longest, -1)[self.index]


def token_embeddings(bert: Any, ids: torch.Tensor, packed: Packed) -> torch.Tensor:
    """The last hidden state, [texts, longest, hidden], as `BertModel` would give it for the padded
    batch whose real token ids, text after text, are `ids` (zeros on padding, which pooling ignores)."""
    embeddings = bert.embeddings
    # In BertEmbeddings' order: words + token type (0, as the padded path passes) + positions.
    hidden = embeddings.word_embeddings(ids) + embeddings.token_type_embeddings.weight[0]
    hidden = embeddings.LayerNorm(hidden + embeddings.position_embeddings(packed.positions))
    # SDPA's boolean mask: True where a query may attend, i.e. on the text's real tokens.
    attend = packed.mask[:, None, None, :]
    for layer in bert.encoder.layer:
        attention = layer.attention.self
        heads, width = attention.num_attention_heads, attention.attention_head_size

        def split(x: torch.Tensor, heads: int = heads, width: int = width) -> torch.Tensor:
            return packed.pad(x).view(packed.texts, packed.longest, heads, width).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(
            split(attention.query(hidden)), split(attention.key(hidden)), split(attention.value(hidden)),
            attn_mask=attend, scale=attention.scaling,
        )
        mixed = packed.unpad(mixed.transpose(1, 2).reshape(packed.texts, packed.longest, heads * width))
        hidden = layer.attention.output(mixed, hidden)
        hidden = layer.output(layer.intermediate(hidden), hidden)
    return packed.pad(hidden)
