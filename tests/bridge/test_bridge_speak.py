"""Text to speech through the bridge on real services (the bundled Piper voice): the official `openai`
client against a `gpu-bridge` process over two services (a long input spoken in parts on both hosts and
joined in order as one WAV, a stream whose first audio comes before the last, SSE events, bad input as a 4xx
in OpenAI's shape), gpu_speak over a real MCP client (the audio block, audio.outputDir, the result limit),
a 0.4.0 host that never gets speech, and a host killed mid-way with the answer still whole and in order
(heard back by Whisper tiny.en on the survivor)."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from gpu_protocol.speech_synthesis import OPENAI_VOICES, PCM_RATE, SPEECH
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.http_api.openai import openai_app
from tests.clients.test_openai_api import TOKEN, OpenAIBridge, openai_bridge
from tests.support.bridges import bridge_client
from tests.support.compat import PREVIOUS_RELEASE, OldService, old_release
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess, start_together
from tests.support.speech_support import wer

pytestmark = pytest.mark.slow  # service processes, espeak-ng, a bridge process
openai = pytest.importorskip("openai")

VOICE_ENV = {"MODEL_SPEAK": "en_US-joe-medium", "GPU_WARM_DEFAULTS": "0"}
"""Nothing is loaded at start (the voice and Whisper load on their first request): a light start."""
SENTENCES = [
    "The library opens at nine in the morning.",
    "Please bring your own bottle of water to the picnic.",
    "We will meet at the train station after lunch on Tuesday.",
    "The museum has a new exhibition about ancient ships and the people who sailed them across the sea.",
    "My sister bought fresh bread, green apples and a small jar of honey at the market on Saturday.",
    "After the concert we walked home slowly under the bright stars and talked about the music.",
    "The old bridge over the river was painted red last summer by volunteers from the village.",
    "Tomorrow the children will plant tomatoes and beans in the school garden behind the gym.",
]
LONG = " ".join(SENTENCES)
"""About 600 characters: the first sentence, then two parts of up to 300 characters (three parts)."""
SHORTER = " ".join(SENTENCES[:4])
"""About 250 characters: the first sentence, then one part."""


@process_fixture(scope="module")
def services() -> Iterator[list[ServiceProcess]]:
    """a speaks and transcribes (to hear the answers back), b speaks."""
    pair = start_together([ServiceProcess(env={**VOICE_ENV, "MODEL_TRANSCRIBE": "tiny.en"}),
                           ServiceProcess(env=VOICE_ENV)])
    yield pair
    for svc in pair:
        svc.stop()


@process_fixture(scope="module")
def bridge(services: list[ServiceProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIBridge]:
    hosts = [{"name": name, "url": svc.url} for name, svc in zip("ab", services, strict=True)]
    with openai_bridge([], tmp_path_factory.mktemp("speak-bridge"), {"hosts": hosts, "timeout": 240}) as running:
        yield running


@pytest.fixture(scope="module")
def client(bridge: OpenAIBridge) -> Any:
    return openai.OpenAI(base_url=bridge.base_url, api_key=TOKEN, max_retries=0, timeout=240)


def wav_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def heard(service: ServiceProcess, wav: bytes) -> str:
    """What Whisper tiny.en on `service` hears in `wav`."""
    response = httpx.post(f"{service.url}/v1/audio/transcriptions", files={"file": ("speech.wav", wav)},
                          data={"model": "whisper-1"}, timeout=240)
    assert response.status_code == 200, response.text
    return str(response.json()["text"])


def spoken_on(bridge: OpenAIBridge) -> list[set[str]]:
    """The hosts of each finished `POST /v1/audio/speech`, from the bridge's log."""
    return [set(hosts.split(", ")) for hosts in re.findall(rf"POST {SPEECH}: .* on (\S+(?:, \S+)*) in", bridge.log_text())]


def test_a_long_input_is_spoken_on_both_hosts_as_one_wav(client: Any, bridge: OpenAIBridge,
                                                         services: list[ServiceProcess]) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=LONG, response_format="wav")
    data = audio.content
    assert data[:4] == b"RIFF" and data.count(b"RIFF") == 1 and data.count(b"WAVE") == 1, "one header"
    seconds = wav_seconds(data)
    assert 25 < seconds < 70, seconds
    assert {"a", "b"} in spoken_on(bridge), bridge.log_text()[-2000:]
    said = heard(services[0], data)
    assert wer(LONG, said) < 0.25, said


def test_a_stream_starts_before_it_ends_and_sse_is_deltas_then_done(bridge: OpenAIBridge, client: Any) -> None:
    started = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="nova", input=SHORTER,
                                                             response_format="pcm") as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        pieces = [(time.perf_counter() - started, piece) for piece in response.iter_bytes() if piece]
    assert len(pieces) >= 2 and pieces[0][0] < pieces[-1][0], [(round(t, 2), len(p)) for t, p in pieces]
    pcm = b"".join(p for _, p in pieces)
    assert len(pcm) % 2 == 0 and 8 < len(pcm) / 2 / PCM_RATE < 30
    body = {"model": "tts-1", "input": " ".join(SENTENCES[:3]), "voice": "alloy", "response_format": "mp3",
            "stream_format": "sse"}
    sse = httpx.post(f"{bridge.base_url}/audio/speech", json=body, timeout=240,
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in sse.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"]
    assert len(events) >= 3 and events[-1]["usage"]["input_tokens"] == len(body["input"])
    mp3 = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert 5 < wav_seconds(mp3) < 20


@pytest.mark.parametrize(("change", "param", "named"), [
    ({"input": ""}, "input", "input"),
    ({"input": "   "}, "input", "blank"),
    ({"input": "a" * 4097}, "input", "4096"),
    ({"response_format": "ogg"}, "response_format", "mp3"),
    ({"speed": 5}, "speed", "4"),
    ({"stream_format": "video"}, "stream_format", "sse"),
    ({"colour": "red"}, "colour", "colour"),
])
def test_bad_input_is_a_4xx_in_openais_shape(bridge: OpenAIBridge, change: dict[str, Any], param: str,
                                              named: str) -> None:
    body = {"model": "tts-1", "input": "Hello.", "voice": "alloy", **change}
    response = httpx.post(f"{bridge.base_url}/audio/speech", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and named in error["message"]


def test_a_bad_voice_and_a_missing_token(client: Any, bridge: OpenAIBridge) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hello.")
    assert "alloy" in raised.value.response.json()["error"]["message"]
    anonymous = openai.OpenAI(base_url=bridge.base_url, api_key="wrong", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError):
        anonymous.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")


def test_the_voices_of_the_pool_behind_the_token(bridge: OpenAIBridge) -> None:
    """The shape the plugin's listVoices reads (openclaw/speech.js: `voices`, names), the hosts' default voice
    first, then OpenAI's names; each voice model with the hosts that speak it; 401 without the token."""
    response = httpx.get(f"{bridge.base_url}/audio/voices", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["voices"] == [VOICE_ENV["MODEL_SPEAK"], *OPENAI_VOICES]
    assert listing["models"] == [{"model": VOICE_ENV["MODEL_SPEAK"], "hosts": ["a", "b"]}]
    refused = httpx.get(f"{bridge.base_url}/audio/voices", timeout=60)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"


@pytest.mark.anyio
async def test_gpu_speak_over_mcp(services: list[ServiceProcess], tmp_path: Path) -> None:
    hosts = [{"name": name, "url": svc.url} for name, svc in zip("ab", services, strict=True)]
    text = " ".join(SENTENCES[:2])
    async with bridge_client({"hosts": hosts, "timeout": 240, "audio": {"outputDir": str(tmp_path / "out")}}) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        result = await c.call_tool("gpu_speak", {"text": text, "format": "opus"})
    assert not result.is_error, result.content
    assert set(tools["gpu_speak"].input_schema["properties"]) == {"text", "voice", "format", "speed", "model"}
    assert not tools["gpu_speak"].annotations.read_only_hint, "it writes files when audio.outputDir is set"
    out = result.structured_content
    assert out is not None and out["format"] == "opus" and out["mime_type"] == "audio/ogg" and out["in_result"]
    assert out["voice"] == "alloy" and out["model"] == "en_US-joe-medium" and set(out["hosts"]) <= {"a", "b"}
    block = result.content[1]
    assert block.type == "audio" and block.mime_type == "audio/ogg"  # type: ignore[union-attr]
    audio = base64.b64decode(block.data)  # type: ignore[union-attr]
    path = Path(out["path"])
    assert path.parent == (tmp_path / "out").resolve() and path.suffix == ".opus" and path.read_bytes() == audio
    assert abs(wav_seconds(audio) - out["duration_s"]) < 0.2 and 3 < out["duration_s"] < 12
    assert out["path"] in result.content[0].text  # type: ignore[union-attr]

    async with bridge_client({"hosts": hosts, "limits": {"maxResultMB": 0.05}}) as c:
        refused = await c.call_tool("gpu_speak", {"text": text, "format": "wav"})
    said = refused.content[0].text  # type: ignore[union-attr]
    assert refused.is_error and "limits.maxResultMB" in said and "audio.outputDir" in said, said
    async with bridge_client({"hosts": hosts, "limits": {"maxResultMB": 0.05},
                              "audio": {"outputDir": str(tmp_path / "big")}}) as c:
        written = await c.call_tool("gpu_speak", {"text": text, "format": "wav"})
    out = written.structured_content
    assert not written.is_error and out is not None and not out["in_result"] and len(written.content) == 1
    wav = Path(out["path"]).read_bytes()
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[40:44], "little") == len(wav) - 44, "the real length"


@pytest.mark.anyio
async def test_a_0_4_0_host_never_gets_speech(services: list[ServiceProcess]) -> None:
    release = old_release(PREVIOUS_RELEASE)
    old = OldService(release).start()
    try:
        hosts = [{"name": "old", "url": old.url}, {"name": "a", "url": services[0].url}]
        for cfg, expected in (({"hosts": hosts, "timeout": 240}, 200), ({"hosts": hosts[:1]}, 503)):
            async with Bridge(parse_config(cfg, "test"), allow_embedded=False) as running:
                transport = httpx.ASGITransport(app=openai_app(running.gpu, running.config))
                async with httpx.AsyncClient(transport=transport, base_url="http://bridge", timeout=240) as http:
                    response = await http.post(SPEECH, json={"input": SHORTER, "voice": "alloy",
                                                             "response_format": "pcm"})
                asked_old = running.gpu.pool.host("old").record
                assert asked_old.served == asked_old.failed == 0, "the 0.4.0 host was never asked to speak"
            assert response.status_code == expected, response.text[:500]
        assert "its /info lists no speak" in response.json()["error"]["message"]
    finally:
        old.stop()


def test_a_host_killed_mid_way_has_its_parts_spoken_elsewhere(client: Any, bridge: OpenAIBridge,
                                                               services: list[ServiceProcess]) -> None:
    """Runs last in this module: it kills service b."""
    text = " ".join([*SENTENCES, *SENTENCES[:4]])
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=text,
                                                             response_format="wav") as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        services[1].kill()
        data = first + b"".join(chunks)
    assert data.count(b"RIFF") == 1
    assert re.search(r"host b: .*(connect|connection)", bridge.log_text()), "b was killed while it held parts"
    said = heard(services[0], data)
    assert wer(text, said) < 0.25, said
