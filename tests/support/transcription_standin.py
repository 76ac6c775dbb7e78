"""A stand-in for the bridge's `POST /v1/audio/transcriptions` and `POST /v1/audio/speech`, for plumbing
tests of the OpenClaw plugin: it speaks `gpu-bridge --transport http`'s command line (the plugin's `bridgeCommand`: a free
port, the token from GPU_BRIDGE_AUTH_TOKEN, the "is ready at" line, `--exit-with-stdin`) or runs
standalone (`--port N --auth-token T`, for OpenClaw's own `openai` provider). It transcribes nothing:
it appends what it received to the JSON-lines file in STANDIN_RECORD and answers a fixed sentence
naming the file; nor does it speak: its "audio" names the format it was asked for.

    python -m tests.support.transcription_standin --transport http --host 127.0.0.1 --port 0 --exit-with-stdin
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MISSING_MODEL = "no-such-model"
"""A model name the stand-in answers 404 for, in OpenAI's error shape."""
SLOW_MODEL = "slow-model"
"""A model name the stand-in answers only after a minute, or records the client's going away."""


BUSY_INPUT = "the pool is busy"
"""A text the stand-in's `/v1/audio/speech` refuses with 429 and Retry-After: 7."""


def speech_for(response_format: str) -> bytes:
    """What the stand-in's `/v1/audio/speech` answers: not audio, but it names the format asked."""
    return f"stand-in {response_format} audio".encode()


def transcript_for(file_name: str, size: int) -> str:
    return f"stand-in transcript of {file_name} ({size} bytes)"


def error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": None}}, status_code=status)


def make_app(token: str, record_path: str) -> Starlette:
    async def transcriptions(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        record: dict[str, Any] = {
            "path": request.url.path,
            "bearer_ok": request.headers.get("authorization") == f"Bearer {token}",
            "content_type": request.headers.get("content-type", "").split(";")[0],
            "fields": fields,
        }
        if isinstance(upload, UploadFile):
            data = await upload.read()
            record["file"] = {"name": upload.filename, "type": upload.content_type, "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()}
        with open(record_path, "a") as out:
            out.write(json.dumps(record) + "\n")
        if not record["bearer_ok"]:
            return error(401, "missing or wrong bearer token")
        if "file" not in record:
            return error(422, "file: send the audio as a multipart file field", "file")
        if fields.get("model") == MISSING_MODEL:
            return error(404, f"model {MISSING_MODEL!r} is not served by any host of the pool", "model")
        if fields.get("model") == SLOW_MODEL:  # until the client goes away, as the bridge would cancel
            for _ in range(600):
                if await request.is_disconnected():
                    with open(record_path, "a") as out:
                        out.write(json.dumps({"disconnected": SLOW_MODEL}) + "\n")
                    return error(499, "client went away")
                await asyncio.sleep(0.1)
        text = transcript_for(record["file"]["name"], record["file"]["size"])
        if fields.get("response_format") == "text":
            return PlainTextResponse(text)
        return JSONResponse({"text": text})

    async def speech(request: Request) -> Response:
        body = await request.json()
        record = {"path": request.url.path, "bearer_ok": request.headers.get("authorization") == f"Bearer {token}",
                  "body": body}
        with open(record_path, "a") as out:
            out.write(json.dumps(record) + "\n")
        if not record["bearer_ok"]:
            return error(401, "missing or wrong bearer token")
        if body.get("input") == BUSY_INPUT:
            return JSONResponse({"error": {"message": "every host is busy; retry later", "type": "rate_limit_error",
                                           "param": None, "code": "hosts_busy"}}, status_code=429,
                                headers={"Retry-After": "7"})
        return Response(speech_for(body.get("response_format", "mp3")), media_type="application/octet-stream")

    async def voices(request: Request) -> Response:
        return JSONResponse({"model": "standin-voice", "voices": ["standin-voice"]})

    return Starlette(routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
                             Route("/v1/audio/speech", speech, methods=["POST"]), Route("/v1/audio/voices", voices)])


def run(make: Callable[[str, str], Starlette], what: str) -> None:
    """Serve the app `make(token, record_path)` makes, with `gpu-bridge --transport http`'s command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth-token", default=os.environ.get("GPU_BRIDGE_AUTH_TOKEN", ""))
    parser.add_argument("--exit-with-stdin", action="store_true")
    args = parser.parse_args()
    assert args.auth_token, "no token: set GPU_BRIDGE_AUTH_TOKEN or --auth-token"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make(args.auth_token, os.environ["STANDIN_RECORD"]),
                                           log_level="warning", timeout_graceful_shutdown=2))
    if args.exit_with_stdin:
        def watch() -> None:
            sys.stdin.read()
            print("stand-in: stdin closed: stopping", file=sys.stderr, flush=True)
            server.should_exit = True

        threading.Thread(target=watch, daemon=True).start()
    print(f"gpu-bridge stand-in is ready at http://{args.host}:{port}/mcp ({what} only)", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    run(make_app, "audio")
