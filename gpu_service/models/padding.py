"""A padded batch: the token ids of several texts (or pairs) as right-padded tensors, the way
the engines that pad (embedding models without an unpadded path, cross-encoders) feed the model."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_batch(
    ids: Sequence[Sequence[int]], pad_id: int, type_ids: Sequence[Sequence[int] | None] | None = None
) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` [len(ids), longest], and `token_type_ids` (zeros where an
    item has none) when `type_ids` is given; on the CPU, for the caller to move."""
    longest = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), longest), dtype=torch.long)
    for row, item in enumerate(ids):
        input_ids[row, : len(item)] = torch.tensor(item, dtype=torch.long)
        attention[row, : len(item)] = 1
    features = {"input_ids": input_ids, "attention_mask": attention}
    if type_ids is not None:
        types = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, segment in enumerate(type_ids):
            if segment is not None:
                types[row, : len(segment)] = torch.tensor(segment, dtype=torch.long)
        features["token_type_ids"] = types
    return features
