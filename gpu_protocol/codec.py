"""Vectors on the wire: float32 rows as one base64 blob, and the one check every block of vectors passes.

A block is a numpy float32 array [count, dimensions]. It is decoded straight from the bytes
(no Python float per number), checked for its count, width and finiteness in one vectorised
pass, and encoded straight from the array's bytes: little-endian float32, rows in order.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import numpy.typing as npt

FLOAT32_LE = np.dtype("<f4")

Block = npt.NDArray[np.floating[Any]]
"""[count, dimensions], rows in input order: float32 from the wire's base64 (or float64 when parsed from
JSON numbers that should keep their precision)."""


class VectorsInvalid(ValueError):
    """Vectors that do not have the promised shape, or hold a number that is not finite."""


def encode_float32_rows(rows_le_bytes: bytes | memoryview) -> str:
    """Base64 of an already little-endian float32 buffer."""
    return base64.b64encode(rows_le_bytes).decode("ascii")


def encode_block(block: Block) -> str:
    """Base64 of `block` as little-endian float32, rows in order (read from the array's memory, no copy
    when it already is little-endian float32)."""
    return encode_float32_rows(np.ascontiguousarray(block, dtype=FLOAT32_LE).data.cast("B"))


def decode_float32_block(blob: str, count: int, dimensions: int) -> Block:
    """`count` rows of `dimensions` little-endian float32 values; the sizes must match exactly.

    The array is a read-only view of the decoded bytes (no copy, no Python floats)."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise VectorsInvalid("embeddings_base64 is not valid base64") from None
    expected = count * dimensions * 4
    if count < 0 or dimensions < 0 or len(raw) != expected:
        raise VectorsInvalid(
            f"embeddings_base64 holds {len(raw)} bytes, expected {count} x {dimensions} x 4 = {expected}"
        )
    return np.frombuffer(raw, dtype=FLOAT32_LE).reshape(count, dimensions)


def decode_float32_rows(blob: str, count: int, dimensions: int) -> list[list[float]]:
    """The same as `decode_float32_block`, as lists of Python floats (for callers that want numbers)."""
    rows: list[list[float]] = decode_float32_block(blob, count, dimensions).tolist()
    return rows


def as_block(rows: Any, dtype: npt.DTypeLike = np.float32) -> Block:
    """Rows of numbers (e.g. JSON arrays) as a block; rows of different lengths are refused."""
    try:
        block: Block = np.asarray(rows, dtype=dtype)
    except (ValueError, TypeError):
        raise VectorsInvalid("vectors of different lengths, or not numbers") from None
    if block.ndim != 2:
        raise VectorsInvalid("vectors of different lengths, or not numbers")
    return block


def check_block(block: Block, count: int, width: int | None = None) -> None:
    """`count` rows of one width (`width`, when given), every number finite; VectorsInvalid if not."""
    if block.ndim != 2 or block.shape[0] != count:
        found = block.shape[0] if block.ndim >= 1 else 0
        raise VectorsInvalid(f"{found} vectors for {count} texts")
    if count == 0:
        return
    if block.shape[1] == 0:
        raise VectorsInvalid("vectors of different lengths")
    if width is not None and block.shape[1] != width:
        raise VectorsInvalid(f"vectors have {block.shape[1]} dimensions, {width} were asked for")
    if not np.isfinite(block).all():
        raise VectorsInvalid("non-finite number in a vector")
