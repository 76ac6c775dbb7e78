"""Speech synthesis on a real service process (the bundled Piper voice, espeak-ng phonemes), through the
official `openai` client: the formats decode (PyAV) at the right rate, pcm is 24 kHz s16le, a stream's
first bytes come before the whole file, SSE is delta events then done, bad input is a 4xx naming what is
allowed, and what it says is heard back by our own /v1/audio/transcriptions (Whisper tiny.en)."""

from __future__ import annotations

import base64
import io
import json

import av
import httpx
import numpy as np
import pytest
from openai import OpenAI, UnprocessableEntityError

from gpu_protocol.speech_synthesis import OPENAI_VOICES, PCM_RATE, SPEECH, VOICES
from tests.support.services import ServiceProcess
from tests.support.speech_support import wer

pytestmark = pytest.mark.slow  # espeak-ng and a service process

VOICE = "en_US-joe-medium"
SPOKEN = ("The library opens at nine in the morning. Please bring your own bottle of water to the picnic. "
          "We will meet at the train station after lunch on Tuesday.")


@pytest.fixture(scope="module")
def client(speech_service: ServiceProcess) -> OpenAI:
    """The official client on the shared speech service (tests/conftest.py: MODEL_SPEAK is VOICE there)."""
    return OpenAI(base_url=f"{speech_service.url}/v1", api_key="unused", max_retries=0, timeout=120)


def decoded(data: bytes) -> tuple[str, int, float]:
    """(container format, sample rate, seconds) of an audio file."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return container.format.name, stream.rate, samples / stream.rate


@pytest.mark.parametrize(("response_format", "container"),
                         [("mp3", "mp3"), ("opus", "ogg"), ("aac", "aac"), ("flac", "flac"), ("wav", "wav")])
def test_each_format_decodes(client: OpenAI, response_format: str, container: str) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there, how are you today?",
                                       response_format=response_format)  # type: ignore[arg-type]
    name, rate, seconds = decoded(audio.content)
    assert container in name and rate > 0 and 1.0 < seconds < 6.0


def test_pcm_is_24_khz_s16le(client: OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="nova", input="Hello there, how are you today?",
                                       response_format="pcm")
    samples = np.frombuffer(audio.content, dtype="<i2")
    assert len(audio.content) % 2 == 0 and 1.0 < len(samples) / PCM_RATE < 6.0
    assert np.abs(samples).max() > 1000  # speech, not silence


def test_streamed_audio_comes_sentence_by_sentence(client: OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice=VOICE, input=SPOKEN, response_format="pcm") as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        pieces = [piece for piece in response.iter_bytes() if piece]
    assert len(pieces) >= 3  # one piece per sentence at least, not one file
    assert len(b"".join(pieces)) / 2 / PCM_RATE > 5.0


def test_sse_is_deltas_then_done(speech_service: ServiceProcess) -> None:
    body = {"model": "tts-1", "input": SPOKEN, "voice": "alloy", "response_format": "pcm", "stream_format": "sse"}
    response = httpx.post(f"{speech_service.url}{SPEECH}", json=body, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 4
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] == len(SPOKEN)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) / 2 / PCM_RATE > 5.0


@pytest.mark.parametrize(("change", "named", "param"), [
    ({"input": ""}, "input", "input"),
    ({"input": "   "}, "blank", "input"),
    ({"input": "a" * 4097}, "4096", "input"),
    ({"voice": "nobody"}, "alloy", "voice"),
    ({"response_format": "ogg"}, "mp3", "response_format"),
    ({"speed": 5}, "4", "speed"),
    ({"stream_format": "video"}, "sse", "stream_format"),
    ({"colour": "red"}, "colour", "colour"),
])
def test_bad_input_is_a_4xx_naming_what_is_allowed(speech_service: ServiceProcess, change: dict[str, object],
                                                     named: str, param: str) -> None:
    """In OpenAI's error shape (`error.message`, `type`, `param`), `detail` beside it for bridges that read it."""
    body = {"model": "tts-1", "input": "Hello.", "voice": "alloy", **change}
    response = httpx.post(f"{speech_service.url}{SPEECH}", json=body, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    answer = response.json()
    assert named in answer["detail"] and answer["error"]["message"] == answer["detail"]
    assert answer["error"]["param"] == param and answer["error"]["type"] == "invalid_request_error"


def test_a_bad_transcription_reads_in_openais_shape_too(speech_service: ServiceProcess) -> None:
    response = httpx.post(f"{speech_service.url}/v1/audio/transcriptions", files={"model": (None, "tiny.en")},
                          timeout=60)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "file" and error["type"] == "invalid_request_error" and "file" in error["message"]


def test_the_openai_client_sees_a_bad_voice_as_unprocessable(client: OpenAI) -> None:
    with pytest.raises(UnprocessableEntityError) as raised:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hello.")
    assert "alloy" in raised.value.response.json()["detail"]
    assert raised.value.param == "voice" and "alloy" in raised.value.message


def test_voices_and_info(speech_service: ServiceProcess) -> None:
    voices = httpx.get(f"{speech_service.url}{VOICES}", timeout=60).json()
    assert voices["model"] == VOICE and voices["voices"] == [VOICE, *OPENAI_VOICES]
    info = httpx.get(f"{speech_service.url}/info", headers={"X-GPU-Protocol": "2"}, timeout=30).json()
    assert info["capabilities"]["speak"]["default"] == VOICE
    assert any(m["kind"] == "speak" and m["name"] == VOICE for m in info["models"])


def test_a_speech_stream_is_served_like_every_route(speech_service: ServiceProcess) -> None:
    """Timing headers (up to the first audio), the caller's class checked, its time in /metrics."""
    body = {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav"}
    response = httpx.post(f"{speech_service.url}{SPEECH}", json=body, headers={"X-GPU-Priority": "batch"}, timeout=60)
    assert response.status_code == 200 and response.content.startswith(b"RIFF")
    assert float(response.headers["x-queue-time"]) >= 0 and float(response.headers["x-inference-time"]) > 0
    bad = httpx.post(f"{speech_service.url}{SPEECH}", json=body, headers={"X-GPU-Priority": "urgent"}, timeout=60)
    assert bad.status_code == 400 and "interactive, batch" in bad.json()["detail"]
    metrics = httpx.get(f"{speech_service.url}/metrics", timeout=30).text
    assert f'gpu_service_inference_seconds_count{{endpoint="{SPEECH}"}}' in metrics


def test_a_stream_named_by_its_request_id_is_cancelled_mid_way(speech_service: ServiceProcess) -> None:
    """The first audio arrives while the request is still being synthesized (the cancel finds it running: a
    service that made the whole file first would answer `cancelled: false`), and the cancel stops it there."""
    body = {"model": "tts-1", "input": " ".join([SPOKEN] * 4), "voice": "alloy", "response_format": "pcm"}
    pieces = []
    with httpx.stream("POST", f"{speech_service.url}{SPEECH}", json=body, headers={"X-Request-Id": "speak-cancel-1"},
                      timeout=120) as response:
        for piece in response.iter_bytes():
            if piece and not pieces:
                cancelled = httpx.post(f"{speech_service.url}/cancel/speak-cancel-1", timeout=30).json()
                assert cancelled == {"cancelled": True}
            pieces.append(piece)
    assert len(b"".join(pieces)) / 2 / PCM_RATE < 12.0  # twelve sentences are about 30 s; it stopped after a few
    assert httpx.post(f"{speech_service.url}/cancel/speak-cancel-1", timeout=30).json() == {"cancelled": False}


def test_round_trip_through_our_own_transcription(client: OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=SPOKEN, response_format="mp3")
    heard = client.audio.transcriptions.create(model="tiny.en", file=("speech.mp3", audio.content))
    assert wer(SPOKEN, heard.text) <= 0.15, heard.text
