"""The wire schema: shared and strict (torch-free: tests/repo/test_torch_free.py)."""


import pytest
from pydantic import ValidationError

from gpu_protocol.bertscore import BertScoreRequest
from gpu_protocol.codec import decode_float32_rows, encode_float32_rows
from gpu_protocol.embed import EmbedRequest, EmbedResponse


def test_base64_round_trip_is_exact() -> None:
    import struct

    rows = [[0.5, -1.25, 0.375], [1.0, 2.0, -0.0]]
    blob = encode_float32_rows(struct.pack("<6f", *rows[0], *rows[1]))
    assert decode_float32_rows(blob, 2, 3) == rows
    response = EmbedResponse(model="m", dimensions=3, count=2, truncated=0, embeddings_base64=blob)
    assert response.vectors() == rows


def test_base64_size_mismatch_is_refused() -> None:
    blob = encode_float32_rows(b"\x00" * 20)
    with pytest.raises(ValueError, match="expected 2 x 3 x 4"):
        decode_float32_rows(blob, 2, 3)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"texts": []}, "texts"),
        ({"texts": ["ok", "  "]}, "texts"),
        ({"texts": ["ok", 3]}, "texts"),
        ({"texts": ["ok"], "bogus": 1}, "bogus"),
        ({"texts": ["ok"], "dimensions": 0}, "dimensions"),
        ({"texts": ["ok"], "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_embed_request_errors_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        EmbedRequest.model_validate(body)
    assert field in str(err.value)


def test_bertscore_accepts_model_alias() -> None:
    req = BertScoreRequest.model_validate({"candidates": ["a"], "references": ["b"], "model": "roberta-large"})
    assert req.model_type == "roberta-large"


def test_result_size_estimate_matches_the_serialised_size() -> None:
    import base64
    import random
    import struct

    import numpy as np
    import pydantic_core

    from mcp_bridge.mcp.embed import vectors_json_bytes

    rng = random.Random(0)
    rows = [[struct.unpack("<f", struct.pack("<f", rng.gauss(0, 0.05)))[0] for _ in range(384)] for _ in range(50)]
    actual = len(pydantic_core.to_json(rows))  # how the MCP SDK serialises a result
    block = np.asarray(rows, dtype=np.float32)  # the bridge measures the block it holds
    assert abs(vectors_json_bytes(block, "float") - actual) / actual < 0.02
    blob = base64.b64encode(struct.pack(f"<{50 * 384}f", *(x for r in rows for x in r)))
    assert vectors_json_bytes(block, "base64") == len(blob)
