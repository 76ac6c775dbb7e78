"""A stand-in for the bridge's `GET /v1/models` and `POST /v1/embeddings`, for tests of the OpenClaw plugin's
memory provider (its `bridgeCommand`, with the same command line as transcription_standin). It refuses the
first STANDIN_REFUSE document (indexing) calls of its life with 429 and `Retry-After: STANDIN_RETRY_AFTER`,
as a pool that is busy or a client over its quota does, then serves them. Every call is appended to the
JSON-lines file in STANDIN_RECORD: when it came, its `X-GPU-Priority`, `input_type`, how many texts and a
digest of them (a retry has its first try's), whether it was refused.
Its vectors are word hashes (texts that share words are close): enough for OpenClaw to index and search.

    python -m tests.support.embedding_standin --transport http --host 127.0.0.1 --port 0 --exit-with-stdin
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import struct
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_protocol.priority import PRIORITY_HEADER
from tests.support.transcription_standin import error, run

MODEL = "standin-embed"
DIMENSIONS = 32


def vector(text: str) -> list[float]:
    out = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        out[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in out)) or 1.0
    return [v / norm for v in out]


def make_app(token: str, record_path: str) -> Starlette:
    refusals_left = [int(os.environ.get("STANDIN_REFUSE", "0"))]
    retry_after = os.environ.get("STANDIN_RETRY_AFTER", "1")

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {token}"

    async def models(request: Request) -> Response:
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        return JSONResponse({"object": "list", "data": [
            {"id": MODEL, "object": "model", "default": True, "dimensions": DIMENSIONS, "max_input_tokens": 512}]})

    async def embeddings(request: Request) -> Response:
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        refuse = body.get("input_type") == "document" and refusals_left[0] > 0
        record: dict[str, Any] = {"at": time.time(), "priority": request.headers.get(PRIORITY_HEADER),
                                  "input_type": body.get("input_type"), "texts": len(texts), "refused": refuse,
                                  "digest": hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]}
        with open(record_path, "a") as out:
            out.write(json.dumps(record) + "\n")
        if refuse:
            refusals_left[0] -= 1
            return JSONResponse({"error": {"message": "every host is busy; retry later", "type": "rate_limit_error",
                                           "param": None, "code": "hosts_busy"}},
                                status_code=429, headers={"Retry-After": retry_after})
        rows = []
        for index, text in enumerate(texts):
            values = vector(text)
            encoded: Any = values
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            rows.append({"object": "embedding", "index": index, "embedding": encoded})
        return JSONResponse({"object": "list", "data": rows, "model": MODEL,
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/embeddings", embeddings, methods=["POST"])])


if __name__ == "__main__":
    run(make_app, "models and embeddings")
