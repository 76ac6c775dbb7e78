"""A transcription's class at the bridge: a WAV file's length from its header, and no guessed class forced
on the host for a file the bridge cannot measure (mcp_bridge/client/audio_length.py, call_class.py)."""

from __future__ import annotations

import io
import struct
import wave
from typing import Any

import httpx
import pytest

from gpu_protocol.priority import PRIORITY_HEADER, TENANT_HEADER
from gpu_protocol.transcribe import TranscriptionOptions, VerboseTranscription
from mcp_bridge.client.audio_length import wav_seconds
from mcp_bridge.client.transcription import Transcriber
from mcp_bridge.config import parse_config
from mcp_bridge.pool.call_class import CallClass, current_class
from mcp_bridge.pool.caller import Caller, current_caller
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols import HttpCall
from mcp_bridge.protocols.speech import AudioRequest


def wav(seconds: float, rate: int = 44_100, channels: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0" * 2 * channels * int(seconds * rate))
    return out.getvalue()


def chunk(name: bytes, body: bytes, size: int | None = None) -> bytes:
    return name + struct.pack("<I", len(body) if size is None else size) + body + b"\0" * (len(body) & 1)


def fmt(rate: int = 16_000, channels: int = 1) -> bytes:
    return chunk(b"fmt ", struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16))


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_a_wav_header_gives_the_length_whatever_its_rate_and_channels() -> None:
    assert wav_seconds(wav(20.0)) == pytest.approx(20.0)  # 3.5 MB: 220 s by its bytes
    assert wav_seconds(wav(3.0, rate=16_000, channels=1)) == pytest.approx(3.0)
    # other chunks (odd-sized, padded) before the samples are skipped
    listed = riff(chunk(b"LIST", b"INFOabc"), fmt(), chunk(b"data", b"\0" * 64_000))
    assert wav_seconds(listed) == pytest.approx(2.0)


def test_a_streamed_or_cut_wav_counts_what_arrived() -> None:
    assert wav_seconds(riff(fmt(), chunk(b"data", b"\0" * 32_000, size=0xFFFFFFFF))) == pytest.approx(1.0)
    assert wav_seconds(riff(fmt(), chunk(b"data", b"\0" * 32_000, size=0))) == pytest.approx(1.0)
    assert wav_seconds(riff(fmt(), chunk(b"data", b"\0" * 32_000, size=320_000))) == pytest.approx(1.0)


@pytest.mark.parametrize("data", [
    b"", b"OggS" + b"\0" * 100, b"ID3\x04" + b"\0" * 100, b"RIFF\0\0\0\0AVI LIST",
    riff(chunk(b"data", b"\0" * 100)),  # samples before any format
    riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 16_000, 0, 2, 16)), chunk(b"data", b"\0" * 100)),  # rate 0
    riff(fmt()),  # no samples at all
    riff(fmt())[:20],  # cut inside its format
])
def test_anything_else_has_no_length_from_its_header(data: bytes) -> None:
    assert wav_seconds(data) is None


class RecordingPool:
    """Stands in for the pool: records the class each transcription is sent in."""

    hosts: list[Any] = []

    def __init__(self) -> None:
        self.classes: list[CallClass | None] = []

    async def send(self, exchange: Any, request: AudioRequest, **_: Any) -> tuple[VerboseTranscription, Any]:
        self.classes.append(current_class.get())
        host = type("Chosen", (), {"name": "h"})()
        return VerboseTranscription(task="transcribe", language="en", duration=1.0, text="hi", segments=[]), host


async def class_of(audio: bytes, filename: str, caller: Caller | None = None) -> CallClass | None:
    pool = RecordingPool()
    config = parse_config({"hosts": [{"name": "h", "url": "http://h.test"}]}, "t")
    transcriber = Transcriber(config, pool, shards=None)  # type: ignore[arg-type]  # one host: never sharded
    token = current_caller.set(caller or Caller())
    try:
        await transcriber.transcribe(AudioRequest(audio, filename, TranscriptionOptions()), deadline=1e12)
    finally:
        current_caller.reset(token)
    return pool.classes[0]


@pytest.mark.anyio
async def test_a_wav_voice_note_is_interactive_and_an_hours_recording_batch() -> None:
    note = await class_of(wav(20.0), "note.wav")
    assert note is not None and (note.priority, note.told_priority) == ("interactive", "interactive")
    hour = await class_of(wav(90.0, rate=16_000, channels=1), "long.wav")
    assert hour is not None and hour.told_priority == "batch"


@pytest.mark.anyio
async def test_a_file_the_bridge_cannot_measure_leaves_the_class_to_the_host() -> None:
    flac = b"fLaC" + b"\0" * 3_000_000  # 190 s by its bytes: a 60-second FLAC voice note is this big
    guessed = await class_of(flac, "note.flac")
    assert guessed is not None and guessed.priority == "batch", "the bridge's own slots still go by the guess"
    assert guessed.told_priority is None, "the host decides from what it decodes"
    asked = await class_of(flac, "note.flac", Caller(asked="interactive"))
    assert asked is not None and asked.told_priority == "interactive", "what the caller asked for is forwarded"
    bulk_client = await class_of(b"OggS" + b"\0" * 1000, "note.ogg", Caller(tenant="archive", highest="batch"))
    assert bulk_client is not None and bulk_client.told_priority == "batch", "a batch client's calls stay batch"


@pytest.mark.anyio
async def test_the_pool_sends_no_class_it_was_not_told_but_still_the_tenant() -> None:
    seen: list[httpx.Headers] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={})

    config = parse_config({"hosts": [{"name": "h", "url": "http://h.test"}]}, "t")
    pool = HostPool(config, transport=httpx.MockTransport(answer))
    for call_class in (CallClass("batch", "archive", told=False), CallClass("batch", "archive")):
        current_class.set(call_class)
        await pool.request("transcribe", lambda h: HttpCall("POST", "/x", {}), lambda h, r: None,
                           deadline=pool.clock() + 30)
    await pool.close()
    assert [h.get(PRIORITY_HEADER) for h in seen] == [None, "batch"]
    assert [h.get(TENANT_HEADER) for h in seen] == ["archive", "archive"]
