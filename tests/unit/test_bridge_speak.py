"""Speech synthesis on the bridge, in process (`httpx.MockTransport` hosts): how a long input is cut into parts,
how the parts become one file with and without PyAV, which hosts may speak (never a gpu-service host whose
/info does not list `speak`, such as 0.4.0), and the stream: parts joined in the input's order whatever order
they finish in, a failing host's parts spoken elsewhere, and the parts still running cancelled (on the hosts
too) when the reader leaves."""

from __future__ import annotations

import asyncio
import io
import json
import struct

import av
import httpx
import numpy as np
import pytest

from gpu_protocol.capabilities import TaskModels
from gpu_protocol.speech_synthesis import PCM_RATE, STREAMING_SIZE, SpeechRequest, split_sentences
from mcp_bridge.client import speech_synthesis as synthesis
from mcp_bridge.client.audio_encode import RAW_FORMATS, PcmEncoder, encode_whole
from mcp_bridge.client.speech_synthesis import PART_CHARS, FormatUnavailable, Speaker, plan, split_parts
from mcp_bridge.pool.caller import Caller, current_caller
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.routing import Need, tier
from tests.unit.test_pool import Handler, make_pool, ok

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."
LONG = " ".join([SENTENCE] * 12)
VOICE = "en_US-joe-medium"


def speaks(pool: HostPool, *names: str) -> None:
    """`names` describe themselves as hosts that speak (and embed); the others as 0.4.0 hosts (embed only)."""
    for host in pool.hosts:
        host.described.version = 2
        host.described.capabilities = {"embed": TaskModels(default="m", loaded=["m"], allowed=["m"])}
        if host.name in names:
            host.described.capabilities["speak"] = TaskModels(default=VOICE, loaded=[VOICE], allowed=[VOICE])


def test_a_long_input_is_its_first_sentence_then_parts_of_whole_sentences() -> None:
    parts = split_parts(LONG)
    assert parts[0] == SENTENCE and len(parts) > 3
    assert all(len(p) <= PART_CHARS for p in parts) and " ".join(parts) == LONG
    assert all(split_sentences(p)[-1] == SENTENCE for p in parts), "cut at sentence ends only"
    assert split_parts("Hello.") == ["Hello."]


def test_how_the_parts_become_one_file(monkeypatch: pytest.MonkeyPatch) -> None:
    long, short = SpeechRequest(input=LONG, voice="alloy"), SpeechRequest(input="Hello.", voice="alloy")
    assert plan(long.model_copy(update={"response_format": "opus"})).host_format == "pcm", "PyAV is here"
    monkeypatch.setattr(synthesis, "can_encode", lambda fmt: fmt in RAW_FORMATS)  # a bridge without PyAV
    assert plan(long.model_copy(update={"response_format": "wav"})).host_format == "pcm"
    assert plan(long).host_format == "mp3" and not plan(long).encodes, "mp3 parts joined as they are"
    assert plan(short.model_copy(update={"response_format": "flac"})).host_format == "flac", "one part: passed on"
    with pytest.raises(FormatUnavailable, match=r"needs PyAV.*makes pcm, wav, mp3 of any length"):
        plan(long.model_copy(update={"response_format": "opus"}))


def test_only_hosts_that_list_speak_may_speak() -> None:
    pool = make_pool({"new": ok, "old": ok, "fresh": ok, "kokoro": ok, "infinity": ok},
                     host_kokoro={"type": "openai", "speak": True}, host_infinity={"type": "openai"})
    speaks(pool, "new")
    pool.host("fresh").described.capabilities = None  # not described yet
    need = Need("speak")
    assert tier(pool.host("new"), need) == "warm" and tier(pool.host("kokoro"), need) == "warm"
    assert tier(pool.host("old"), need) is None, "a 0.4.0 host lists no speak"
    assert tier(pool.host("fresh"), need) is None, "unknown until its /info is read"
    assert tier(pool.host("infinity"), need) is None
    assert tier(pool.host("old"), Need("embed")) == "warm", "the old host serves the rest"


def pcm_of(request: httpx.Request) -> bytes:
    """A host's `pcm` that says which text it was: the text's bytes, padded to whole samples."""
    text = json.loads(request.content)["input"].encode() + b" "
    return text + b" " * (len(text) % 2)


def speaking(delay_of_first: float = 0.0, log: list[str] | None = None) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:  # type: ignore[return]
        if request.url.path.startswith("/cancel/"):
            (log if log is not None else []).append("cancel")
            return httpx.Response(200, json={"cancelled": True})
        body = json.loads(request.content)
        assert body["response_format"] == "pcm" and body["stream_format"] == "audio"
        try:
            await asyncio.sleep(delay_of_first if body["input"] == SENTENCE else 0.01)
        except asyncio.CancelledError:
            (log if log is not None else []).append("abandoned")
            raise
        return httpx.Response(200, content=pcm_of(request), headers={"content-type": "audio/pcm", "x-model": VOICE})
    return handle  # type: ignore[return-value]


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.anyio
async def test_parts_are_joined_in_order_and_a_failed_hosts_parts_spoken_elsewhere() -> None:
    pool = make_pool({"a": speaking(delay_of_first=0.2), "b": refused})  # the first part finishes last
    speaks(pool, "a", "b")
    stream = await Speaker(pool.config, pool).stream(SpeechRequest(input=LONG, voice="alloy", response_format="pcm"))
    pieces = [piece async for piece in stream.chunks()]
    assert b"".join(pieces).decode().split() == LONG.split(), "every part, in the input's order"
    assert len(pieces) == len(split_parts(LONG)) and stream.hosts == ["a"] * len(pieces) and stream.model == VOICE
    assert stream.duration_s == sum(len(p) for p in pieces) / 2 / PCM_RATE
    await pool.close()


@pytest.mark.anyio
async def test_a_reader_that_leaves_cancels_the_parts_still_running() -> None:
    log: list[str] = []
    pool = make_pool({"a": speaking(log=log), "b": speaking(delay_of_first=5.0, log=log)},
                     host_a={"maxConcurrent": 1}, host_b={"maxConcurrent": 1})
    speaks(pool, "a", "b")
    stream = await Speaker(pool.config, pool).stream(SpeechRequest(input=LONG, voice="alloy", response_format="wav"))
    chunks = stream.chunks()
    reader = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.3)  # b holds the first part, a has spoken others
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await chunks.aclose()
    await asyncio.sleep(0.05)
    assert "abandoned" in log and "cancel" in log, log
    await pool.close()


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * PCM_RATE)) / PCM_RATE
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()


def test_one_file_of_many_parts() -> None:
    parts = [tone(0.5), tone(0.25), tone(0.75)]
    streamed = PcmEncoder("wav")
    wav = b"".join([*(streamed.encode(p) for p in parts), streamed.finish()])
    assert wav.count(b"RIFF") == 1 and struct.unpack("<I", wav[40:44])[0] == STREAMING_SIZE
    whole = encode_whole(parts, "wav")
    assert struct.unpack("<I", whole[40:44])[0] == len(whole) - 44 == sum(map(len, parts))
    assert whole[44:] == wav[44:] == b"".join(parts)
    for fmt in ("mp3", "opus", "aac", "flac"):
        assert abs(decoded_seconds(encode_whole(parts, fmt)) - 1.5) < 0.1, fmt
    assert encode_whole(parts, "pcm") == b"".join(parts)


@pytest.mark.anyio
async def test_an_openai_host_with_speak_true_is_sent_openais_fields_only() -> None:
    sent: list[tuple[str, dict[str, object]]] = []

    def kokoro(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, content=b"\0\1" * 2400, headers={"content-type": "audio/pcm"})

    pool = make_pool({"kokoro": kokoro, "infinity": refused}, host_kokoro={"type": "openai", "speak": True},
                     host_infinity={"type": "openai"})
    stream = await Speaker(pool.config, pool).stream(SpeechRequest(input="Hello there.", voice="af_bella",
                                                                   model="tts-1", response_format="wav"))
    audio = [piece async for piece in stream.chunks()]
    assert sent == [("/v1/audio/speech", {"model": "tts-1", "input": "Hello there.", "voice": "af_bella",
                                          "response_format": "pcm", "speed": 1.0})]
    assert b"".join(audio)[:4] == b"RIFF" and stream.hosts == ["kokoro"] and stream.duration_s == 0.1
    await pool.close()


@pytest.mark.anyio
async def test_every_part_carries_the_calls_class_and_tenant_to_its_host() -> None:
    """A short reply is interactive, a chapter batch (gpu_protocol.priority.speak_by_size), decided once per
    call for the caller: every part's request tells its host, so the host queues it in that class."""
    seen: list[tuple[str | None, str | None]] = []
    handle = speaking()

    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("x-gpu-priority"), request.headers.get("x-gpu-tenant")))
        return await handle(request)

    pool = make_pool({"a": recording})
    speaks(pool, "a")
    chapter = " ".join([SENTENCE] * 30)  # over 2,000 characters
    token = current_caller.set(Caller(tenant="reader"))
    try:
        for text in (SENTENCE, chapter):
            stream = await Speaker(pool.config, pool).stream(SpeechRequest(input=text, voice="alloy",
                                                                           response_format="pcm"))
            assert [p async for p in stream.chunks()]
    finally:
        current_caller.reset(token)
    assert seen[0] == ("interactive", "reader")
    assert len(seen) > 2 and set(seen[1:]) == {("batch", "reader")}, seen
    await pool.close()


def speaking_as(voices: dict[str, list[str]]) -> Handler:
    """A host that speaks these voice models (model -> its voices, as the service checks them): anything else
    is refused as the service refuses it, 422 naming `voice`."""
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        model = body.get("model") or next(iter(voices))
        if body["voice"] not in (*voices.get(model, ()), model, "alloy"):
            return httpx.Response(422, json={"detail": f"voice {body['voice']!r} is not a voice of model {model!r}"})
        return httpx.Response(200, content=b"\0\0" * 240, headers={"content-type": "audio/pcm", "x-model": model})
    return handle


@pytest.mark.anyio
async def test_a_voice_the_pool_lists_is_spoken_by_a_host_that_has_it() -> None:
    """Hosts with different voices: a request naming one host's voice model, or a speaker of a model with
    several, goes to a host with that model (the bridge names the model for it), never to a host that would
    refuse the voice; OpenAI's names go anywhere."""
    pool = make_pool({"joe": speaking_as({VOICE: [VOICE]}), "duo": speaking_as({"duo": ["amy", "bob"]})})
    speaks(pool, "joe")
    pool.host("duo").described.version = 2
    pool.host("duo").described.capabilities = {"speak": TaskModels(default="duo", loaded=["duo"], allowed=["duo"],
                                                                    speakers={"duo": ["amy", "bob"]})}
    speaker = Speaker(pool.config, pool)
    for voice, model, host in [("bob", "duo", "duo"), ("amy", "duo", "duo"), ("duo", "duo", "duo"),
                               (VOICE, VOICE, "joe")]:
        for _ in range(4):  # the pool spreads calls over both hosts: each of these must still land on one
            stream = await speaker.stream(SpeechRequest(input="Hello there.", voice=voice, response_format="pcm"))
            assert [p async for p in stream.chunks()] and stream.hosts == [host] and stream.model == model, voice
    spread = set()
    for _ in range(8):
        stream = await speaker.stream(SpeechRequest(input="Hello there.", voice="alloy", response_format="pcm"))
        assert [p async for p in stream.chunks()]
        spread.update(stream.hosts)
    assert spread == {"joe", "duo"}, "an OpenAI name is any host's default voice"
    await pool.close()
