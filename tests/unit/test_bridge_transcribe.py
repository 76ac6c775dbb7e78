"""gpu_transcribe and the bridge's /v1/audio routes without a Whisper: what the bridge itself decides.

The audio's way in (paths only under audio.allowedDirs, however the path is spelled; base64 with a
size limit), errors that name the argument, a pool without a host that transcribes, an `openai` host
with `transcribe: true` sent OpenAI's multipart request (a FakeHost standing in for speaches/vLLM),
the response formats of the HTTP route through the official `openai` client, speech kept off
protocol-1 (0.3.0) hosts, and the cutting and merging of a long recording (numpy, no decoder).
Real Whisper on real services: tests/bridge/test_bridge_speech.py.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mcp import Client
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gpu_protocol.transcribe import TRANSCRIPTIONS, TranscriptionOptions, VerboseTranscription
from gpu_protocol.versions import FieldUnsupported, fit_request
from mcp_bridge.bridge import Bridge
from mcp_bridge.client.audio_split import FRAME, RATE, cut_points, part_count, split_audio
from mcp_bridge.client.transcription import merge
from mcp_bridge.config import ConfigError, parse_config
from mcp_bridge.http_api.openai import openai_app
from mcp_bridge.mcp.server import build_server
from tests.support.fake_host import FakeHost

openai = pytest.importorskip("openai")

AUDIO = b"OggS" + bytes(range(256)) * 8
SEGMENTS = [{"id": 0, "start": 0.0, "end": 1.5, "text": " Buy milk"}, {"id": 1, "start": 1.5, "end": 3.0, "text": " and bread."}]


class SpeechServer:
    """An OpenAI-compatible speech server (speaches, vLLM) on loopback: records what it was sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.forms: list[dict[str, Any]] = []

    async def transcriptions(self, request: Request) -> JSONResponse:
        form = await request.form()
        upload = form["file"]
        assert not isinstance(upload, str)
        self.forms.append({"file": await upload.read(), "filename": upload.filename,
                           **{k: form.getlist(k) if k.endswith("[]") else form[k] for k in form if k != "file"}})
        if self.status != 200:
            return JSONResponse({"error": {"message": "could not decode the audio file"}}, status_code=self.status)
        return JSONResponse({"task": "transcribe", "language": "english", "duration": 3.0, "text": "Buy milk and bread.",
                             "segments": SEGMENTS, "x_extra": 1})

    def routes(self) -> list[Route]:
        async def models(request: Request) -> JSONResponse:
            return JSONResponse({"object": "list", "data": []})

        return [Route("/v1/models", models), Route(TRANSCRIPTIONS, self.transcriptions, methods=["POST"])]


@pytest.fixture
def speech_server() -> Iterator[tuple[SpeechServer, FakeHost]]:
    server = SpeechServer()
    with FakeHost(server.routes()) as host:
        yield server, host


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "note.ogg").write_bytes(AUDIO)
    (allowed / "sub" / "deep.ogg").write_bytes(AUDIO)
    (outside / "secret.ogg").write_bytes(b"secret")
    os.symlink(outside / "secret.ogg", allowed / "link-out.ogg")
    os.symlink(outside, allowed / "dir-out")
    os.symlink(allowed / "note.ogg", allowed / "link-in.ogg")
    return allowed, outside


def speech_config(url: str, allowed: list[str] | None = None, **host: Any) -> dict[str, Any]:
    entry = {"name": "speaches", "url": url, "type": "openai", "transcribe": True, "model": "Systran/whisper-small", **host}
    return {"hosts": [entry], "audio": {"allowedDirs": allowed or []}}


@asynccontextmanager
async def tool_client(config: dict[str, Any]) -> AsyncIterator[Client]:
    async with Bridge(parse_config(config, "test"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as client:
            yield client


async def call(client: Client, **arguments: Any) -> tuple[bool, str, Any]:
    result = await client.call_tool("gpu_transcribe", arguments)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return result.is_error, text, result.structured_content


# --------------------------------------------------------------------------- the tool


@pytest.mark.anyio
async def test_an_openai_host_with_transcribe_gets_openais_multipart(speech_server, dirs) -> None:
    server, host = speech_server
    allowed, _ = dirs
    async with tool_client(speech_config(host.url, [str(allowed)])) as c:
        failed, text, out = await call(c, path=str(allowed / "note.ogg"), language="en", prompt="groceries",
                                       word_timestamps=True)
    assert not failed, text
    assert text == "Buy milk and bread."
    assert [s["start"] for s in out["segments"]] == [0.0, 1.5] and out["duration"] == 3.0
    assert out["hosts"] == ["speaches"] and out["parts"] == 1 and out["model"] == "Systran/whisper-small"
    (sent,) = server.forms
    assert sent["file"] == AUDIO and sent["filename"] == "note.ogg"
    assert sent["model"] == "Systran/whisper-small" and sent["response_format"] == "verbose_json"
    assert sent["language"] == "en" and sent["prompt"] == "groceries"
    assert sent["timestamp_granularities[]"] == ["segment", "word"]


@pytest.mark.anyio
async def test_paths_are_read_only_under_the_allowed_directories(speech_server, dirs) -> None:
    server, host = speech_server
    allowed, outside = dirs
    async with tool_client(speech_config(host.url, [str(allowed)])) as c:
        for inside in (allowed / "note.ogg", allowed / "sub" / "deep.ogg", allowed / "link-in.ogg",
                       allowed / "sub" / ".." / "note.ogg"):
            failed, text, _ = await call(c, path=str(inside))
            assert not failed, (inside, text)
        refused = [outside / "secret.ogg", allowed / "link-out.ogg", allowed / "dir-out" / "secret.ogg",
                   allowed / ".." / "outside" / "secret.ogg", Path("/etc/passwd")]
        for path in refused:
            failed, text, _ = await call(c, path=str(path))
            assert failed and "path: " in text and "outside the directories" in text, (path, text)
        for path, why in ((Path("note.ogg"), "not an absolute path"), (allowed / "missing.ogg", "does not exist"),
                          (allowed / "sub", "not a regular file")):
            failed, text, _ = await call(c, path=str(path))
            assert failed and "path: " in text and why in text, (path, text)
    assert len(server.forms) == 4 and all(f["file"] == AUDIO for f in server.forms), "nothing else was sent"


@pytest.mark.anyio
async def test_no_allowed_directories_no_files(speech_server, dirs) -> None:
    _, host = speech_server
    allowed, _ = dirs
    async with tool_client(speech_config(host.url)) as c:
        failed, text, _ = await call(c, path=str(allowed / "note.ogg"))
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert failed and "path: this bridge reads no files" in text and "audio.allowedDirs" in text, text
    assert "audio_base64" in text and "use audio_base64" in (tools["gpu_transcribe"].description or "")


@pytest.mark.anyio
async def test_base64_audio_and_its_errors(speech_server) -> None:
    server, host = speech_server
    async with tool_client({**speech_config(host.url), "audio": {"maxMB": 0.001}}) as c:
        ok = await call(c, audio_base64=base64.b64encode(AUDIO[:1000]).decode(), filename="n.ogg")
        assert not ok[0], ok[1]
        assert server.forms[-1]["filename"] == "n.ogg" and server.forms[-1]["file"] == AUDIO[:1000]
        cases = {
            "audio_base64: not valid base64": {"audio_base64": "not base64!"},
            "audio_base64: 1049 bytes, over this bridge's limit of 1048": {"audio_base64": base64.b64encode(b"x" * 1049).decode()},
            "give exactly one of path": {},
            "give exactly one of path ": {"audio_base64": "AAAA", "path": "/tmp/x.ogg"},
            "audio_base64: String should have at most": {"audio_base64": "A" * 2000},
            "language: String should have at least 2": {"audio_base64": "AAAA", "language": "e"},
        }
        for said, arguments in cases.items():
            failed, text, _ = await call(c, **arguments)
            assert failed and said.strip() in text, (arguments.keys(), text)


@pytest.mark.anyio
async def test_a_host_refusing_the_audio_names_the_argument(dirs) -> None:
    server = SpeechServer(status=400)
    allowed, _ = dirs
    with FakeHost(server.routes()) as host:
        async with tool_client(speech_config(host.url, [str(allowed)])) as c:
            failed, text, _ = await call(c, path=str(allowed / "note.ogg"))
            failed_b64, text_b64, _ = await call(c, audio_base64=base64.b64encode(AUDIO).decode())
    assert failed and text.startswith("Error executing tool gpu_transcribe: path: host 'speaches' could not "
                                      "transcribe it: could not decode the audio file"), text
    assert failed_b64 and "audio_base64: host 'speaches'" in text_b64, text_b64


@pytest.mark.anyio
async def test_whisper_1_means_each_hosts_default_model(speech_server) -> None:
    """OpenAI's habitual model name reaches a host configured with another model as that model, as the HTTP
    route and the service take it, instead of "no host serves transcribe with model 'whisper-1'"."""
    server, host = speech_server
    async with tool_client(speech_config(host.url)) as c:
        failed, text, out = await call(c, audio_base64=base64.b64encode(AUDIO).decode(), model="whisper-1")
    assert not failed, text
    assert out["model"] == "Systran/whisper-small" and [f["model"] for f in server.forms] == ["Systran/whisper-small"]
    assert TranscriptionOptions(model="whisper-1").model is None and TranscriptionOptions(model="tiny.en").model == "tiny.en"


@pytest.mark.anyio
async def test_a_pool_without_a_transcribing_host_says_how_to_configure_one(speech_server) -> None:
    _, host = speech_server
    config = {"hosts": [{"name": "emb", "url": host.url, "type": "openai"}]}
    async with tool_client(config) as c:
        failed, text, _ = await call(c, audio_base64=base64.b64encode(AUDIO).decode())
    assert failed and "no configured host can serve transcribe" in text, text
    assert "transcribe: true on an openai host" in text and "gpu-service host" in text, text
    with pytest.raises(ConfigError, match="transcribe: true is for openai hosts"):
        parse_config({"hosts": [{"url": "http://tei:80", "type": "tei", "transcribe": True}]}, "test")


def test_speech_is_kept_off_protocol_1_hosts() -> None:
    body = {"audio": "AAAA", "response_format": "verbose_json"}
    with pytest.raises(FieldUnsupported, match=r"protocol 1 \(0.3.0\), which has no `/v1/audio/transcriptions`"):
        fit_request(TRANSCRIPTIONS, body, 1)
    assert fit_request(TRANSCRIPTIONS, body, 2) == body


# --------------------------------------------------------------------------- the HTTP route


@pytest.mark.anyio
async def test_the_http_route_serves_openais_formats(speech_server, tmp_path: Path) -> None:
    server, host = speech_server
    async with Bridge(parse_config(speech_config(host.url), "test"), allow_embedded=False) as bridge:
        app = openai_app(bridge.gpu, bridge.config)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            client = openai.AsyncOpenAI(api_key="unused", base_url="http://bridge/v1", http_client=http)
            note = ("note.ogg", AUDIO)
            plain = await client.audio.transcriptions.create(file=note, model="whisper-1")
            verbose = await client.audio.transcriptions.create(file=note, model="whisper-1",
                                                               response_format="verbose_json")
            srt = await client.audio.transcriptions.create(file=note, model="whisper-1", response_format="srt")
            vtt = await client.audio.transcriptions.create(file=note, model="whisper-1", response_format="vtt")
            text = await client.audio.transcriptions.create(file=note, model="whisper-1", response_format="text")
            with pytest.raises(openai.UnprocessableEntityError) as bad:
                await client.audio.transcriptions.create(file=note, model="whisper-1", response_format="xml")  # type: ignore[arg-type]
            missing = await http.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                                      files={"audio": ("a.ogg", AUDIO)})
            as_json = await http.post("/v1/audio/transcriptions", json={"file": "x"})
    assert plain.text == "Buy milk and bread."
    assert verbose.segments is not None and [s.end for s in verbose.segments] == [1.5, 3.0]
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nBuy milk\n")  # type: ignore[attr-defined]
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nBuy milk")  # type: ignore[attr-defined]
    assert text.strip() == "Buy milk and bread."  # type: ignore[attr-defined]
    assert bad.value.body["param"] == "response_format"  # type: ignore[index]
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "file"
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["error"]["message"]
    assert all(f["model"] == "Systran/whisper-small" for f in server.forms), "whisper-1 is the host's model"


# --------------------------------------------------------------------------- cutting and merging


def tones_with_pauses(seconds: list[tuple[float, float]]) -> np.ndarray:
    """(sound, pause) pairs: a 220 Hz tone for `sound` seconds then silence for `pause`."""
    parts = []
    for sound, pause in seconds:
        t = np.arange(int(sound * RATE)) / RATE
        parts += [(8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16), np.zeros(int(pause * RATE), np.int16)]
    return np.concatenate(parts)


def test_cuts_fall_in_the_pauses_near_each_share() -> None:
    pcm = tones_with_pauses([(12.0, 0.8), (5.2, 0.6), (8.4, 1.0), (11.5, 0.0)])  # 39.5 s
    pauses = [(12.0, 12.8), (18.0, 18.6), (27.0, 28.0)]
    for parts in (2, 3):
        cuts = cut_points(pcm, parts)
        assert len(cuts) == parts - 1 and cuts == sorted(cuts)
        for cut in cuts:
            assert any(lo <= cut / RATE <= hi for lo, hi in pauses), (parts, cut / RATE)
    pieces = split_audio(pcm, 3)
    assert [round(p.offset, 2) for p in pieces][0] == 0.0 and sum(len(p.wav) - 44 for p in pieces) == 2 * len(pcm)
    assert part_count(40.0, 2) == 2 and part_count(1800.0, 2) == 3 and part_count(15.0, 4) == 1
    assert cut_points(pcm[: FRAME * 10], 2) == []


def test_merge_puts_every_part_on_the_recordings_clock() -> None:
    def part(text: str, spans: list[tuple[float, float]]) -> VerboseTranscription:
        return VerboseTranscription.model_validate({
            "language": "en", "duration": 30.0, "text": text, "model": "tiny.en",
            "segments": [{"id": i, "start": a, "end": b, "text": text} for i, (a, b) in enumerate(spans)],
            "words": [{"word": text, "start": a, "end": b} for a, b in spans]})

    merged = merge([(0.0, part(" one", [(0.0, 4.0), (5.0, 9.5)])), (29.5, part(" two ", [(0.5, 3.0)])),
                    (61.0, part("", []))], 70.0, TranscriptionOptions(timestamp_granularities=["segment", "word"]))
    assert merged.text == "one two" and merged.duration == 70.0
    assert [(s.id, s.start, s.end) for s in merged.segments] == [(0, 0.0, 4.0), (1, 5.0, 9.5), (2, 30.0, 32.5)]
    assert merged.words is not None and [w.start for w in merged.words] == [0.0, 5.0, 30.0]
    assert merge([(0.0, part("a", []))], 1.0, TranscriptionOptions()).words is None
    json.dumps(merged.model_dump(mode="json"))
