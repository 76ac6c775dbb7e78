"""Vectors in the bridge: blocks of numbers from a host, kept as numpy arrays until a caller wants lists.

A `VectorBlock` is what a protocol's parse returns for a shard (already checked: count,
width, finite), what sharding joins (one `np.concatenate`), and what `gpu_embed` encodes
(base64 straight from the array's bytes). Python floats are only made by `rows()`, for a
caller that asked for numbers. Our service's vectors arrive as float32 and stay float32;
JSON numbers from an OpenAI-compatible or TEI host are kept in float64, as sent.

The similarity of vectors (for hosts that only embed) is computed here too, vectorised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from gpu_protocol.codec import encode_block
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse, top_matches

Array = npt.NDArray[np.floating[Any]]
"""[count, dimensions], float32 (our service) or float64 (JSON numbers from other servers)."""


@dataclass(frozen=True)
class VectorBlock:
    array: Array
    model: str
    truncated: int = 0
    """Texts the host cut at the model's maximum length."""
    hosts: tuple[str, ...] = ()
    """Hosts that computed the vectors, sorted."""
    tokens: int = 0
    """Tokens the model read, as the host reports them (0 when it reports none)."""

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def dimensions(self) -> int:
        return int(self.array.shape[1]) if self.array.ndim == 2 else 0

    def rows(self) -> list[list[float]]:
        """The vectors as lists of Python floats, in input order."""
        rows: list[list[float]] = self.array.tolist()
        return rows

    def base64(self) -> str:
        """Little-endian float32, rows in input order (the wire's `embeddings_base64`)."""
        return encode_block(self.array)

    def computed_on(self, host: str) -> VectorBlock:
        return replace(self, hosts=(host,))


def join(blocks: Sequence[VectorBlock]) -> VectorBlock:
    """Shards back into one block, in order (they must share a width)."""
    if len(blocks) == 1:
        return blocks[0]
    return VectorBlock(
        array=np.concatenate([b.array for b in blocks]),
        model=blocks[0].model,
        truncated=sum(b.truncated for b in blocks),
        hosts=tuple(sorted({h for b in blocks for h in b.hosts})),
        tokens=sum(b.tokens for b in blocks),
    )


def renormalised(array: Array, dimensions: int | None) -> Array:
    """Matryoshka truncation to `dimensions` (when given), then every row to unit length."""
    if dimensions is not None:
        array = array[:, :dimensions]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)


def similarity_from_block(request: SimilarityRequest, block: VectorBlock) -> SimilarityResponse:
    """What a gpu-service host's /similarity answers, from unit vectors of `request.inputs()`: for
    hosts that only embed (openai/tei), whose vectors then do travel to the bridge."""
    vectors, n = block.array, len(request.texts)
    out = SimilarityResponse(mode=request.chosen_mode, model=block.model, count=len(block), truncated=0)
    if request.mode == "pairs":
        out.scores = np.clip((vectors[:n] * vectors[n:]).sum(axis=1), -1.0, 1.0).tolist()
    elif request.mode == "query":
        out.scores = np.clip(vectors[:n] @ vectors[n], -1.0, 1.0).tolist()
        out.matches = top_matches(out.scores, request.top_k)
    else:
        out.matrix = np.clip(vectors @ vectors.T, -1.0, 1.0).tolist()
    return out
