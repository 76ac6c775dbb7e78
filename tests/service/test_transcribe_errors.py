"""Bad input to the speech routes gets a clear 4xx naming what was wrong, never a 500 and never a
stuck worker: files that are not audio, limits, options, models of the wrong kind, auth."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.transcribe import TRANSCRIPTIONS, TRANSLATIONS
from gpu_protocol.versions import PROTOCOL_VERSION
from gpu_service.errors import Unprocessable
from gpu_service.tasks.transcribe.decode import Decoders
from tests.support.services import ServiceProcess
from tests.support.speech_support import FOX, MEETING, SPEECH_ENV, encode, speak, wer

pytestmark = pytest.mark.slow  # espeak-ng, ffmpeg and service processes

MAX_BYTES = 300_000
MAX_SECONDS = 15


@pytest.fixture(scope="module")
def limited() -> Iterator[ServiceProcess]:
    env = {**SPEECH_ENV, "GPU_MAX_AUDIO_BYTES": str(MAX_BYTES), "GPU_MAX_AUDIO_SECONDS": str(MAX_SECONDS)}
    svc = ServiceProcess(env=env).start()
    yield svc
    svc.stop()


def test_a_host_warms_only_the_tasks_it_names(limited: ServiceProcess) -> None:
    """GPU_WARM_DEFAULTS=transcribe (SPEECH_ENV): Whisper is loaded when the service is ready, the embedding
    and BERTScore defaults are not (each loads on its first request), and /health does not call that degraded."""
    info = httpx.get(f"{limited.url}/info", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)}, timeout=10)
    capabilities = info.json()["capabilities"]
    assert capabilities["transcribe"]["loaded"] == ["tiny.en"]
    assert capabilities["embed"]["default"] and capabilities["embed"]["loaded"] == []
    assert capabilities["bertscore"]["loaded"] == []
    assert httpx.get(f"{limited.url}/health", timeout=10).json()["status"] == "ok"


@pytest.fixture(scope="module")
def fox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(speak(FOX, tmp_path_factory.mktemp("speech") / "fox.wav"), ".ogg")


def post(svc: ServiceProcess, name: str, data: bytes, path: str = TRANSCRIPTIONS, **fields: Any) -> httpx.Response:
    return httpx.post(f"{svc.url}{path}", files={"file": (name, data, "audio/ogg")}, data=fields, timeout=120)


def refused(response: httpx.Response, status: int, *words: str) -> str:
    """`response` is a refusal with `status` whose words include `words`; on OpenAI's audio routes in OpenAI's
    error shape too (a body over the size limit, refused before the app reads it, included)."""
    assert response.status_code == status, response.text
    detail: str = response.json()["detail"]
    if response.url.path.startswith("/v1/audio/"):
        assert response.json()["error"]["message"] == detail, response.text
    for word in words:
        assert word in detail, detail
    return detail


@pytest.mark.parametrize(("name", "data", "words"), [
    ("note.ogg", b"This is a text file, not a voice note.\n" * 20, ("note.ogg", "not audio")),
    ("random.mp3", bytes(range(256)) * 40, ("random.mp3", "not audio")),
    ("empty.ogg", b"", ("empty.ogg", "empty")),
])
def test_files_that_are_not_audio(limited: ServiceProcess, name: str, data: bytes, words: tuple[str, ...]) -> None:
    refused(post(limited, name, data), 422, *words)


def test_a_truncated_file(limited: ServiceProcess, fox: Path) -> None:
    refused(post(limited, "cut.ogg", fox.read_bytes()[:200]), 422, "cut.ogg")


@pytest.mark.parametrize(("fields", "words"), [
    ({"response_format": "xml"}, ("response_format", "verbose_json")),
    ({"language": "xx"}, ("language", "'xx'", "ISO-639-1")),
    ({"language": "de"}, ("English-only", "'de'")),
    ({"temperature": "7"}, ("temperature",)),
    ({"timestamp_granularities[]": "sentence"}, ("timestamp_granularities", "word")),
    ({"stream": "true"}, ("unknown form field", "stream")),
    ({"model": "all-MiniLM-L6-v2"}, ("all-MiniLM-L6-v2", "cannot transcribe", "BertModel")),
])
def test_bad_options(limited: ServiceProcess, fox: Path, fields: dict[str, str], words: tuple[str, ...]) -> None:
    refused(post(limited, "fox.ogg", fox.read_bytes(), **fields), 422, *words)


def test_a_model_outside_the_allowlist(limited: ServiceProcess, fox: Path) -> None:
    refused(post(limited, "fox.ogg", fox.read_bytes(), model="someone/whisper-evil"), 403, "ALLOWED_MODELS")


def test_a_whisper_model_sent_to_embed(limited: ServiceProcess) -> None:
    response = httpx.post(f"{limited.url}/embed", json={"texts": ["hi"], "model": "tiny.en"}, timeout=60)
    refused(response, 422, "tiny.en", "Whisper", "/v1/audio/transcriptions")


def test_translation_needs_a_multilingual_model(limited: ServiceProcess, fox: Path) -> None:
    refused(post(limited, "fox.ogg", fox.read_bytes(), path=TRANSLATIONS), 422, "English-only", "translate")


def test_request_shape_errors(limited: ServiceProcess, fox: Path) -> None:
    url = f"{limited.url}{TRANSCRIPTIONS}"
    refused(httpx.post(url, data={"model": "tiny.en"}, files={"other": ("x", b"x")}, timeout=30), 422, "file")
    refused(httpx.post(url, content=fox.read_bytes(), headers={"content-type": "audio/ogg"}, timeout=30),
            415, "multipart/form-data", "application/json")
    refused(httpx.post(url, json={"audio": "%%% not base64 %%%"}, timeout=30), 422, "base64")
    refused(httpx.post(url, json={"audio": "AAAA", "voice": "x"}, timeout=30), 422, "voice")
    refused(httpx.post(url, json={"model": "tiny.en"}, timeout=30), 422, "audio")


def test_files_over_the_size_limit(limited: ServiceProcess, tmp_path: Path) -> None:
    big = speak(MEETING, tmp_path / "big.wav").read_bytes()  # a WAV of ~9 s: ~400 kB
    assert len(big) > MAX_BYTES
    refused(post(limited, "big.wav", big), 413, "GPU_MAX_AUDIO_BYTES")
    body = {"audio": base64.b64encode(big).decode()}
    refused(httpx.post(f"{limited.url}{TRANSCRIPTIONS}", json=body, timeout=30), 413, "GPU_MAX_AUDIO_BYTES")
    huge = b"\0" * (MAX_BYTES * 2)  # over even the body limit of the path: refused before it is read
    refused(post(limited, "huge.wav", huge), 413, "GPU_MAX_AUDIO_BYTES")


def test_audio_over_the_duration_limit(limited: ServiceProcess, tmp_path: Path) -> None:
    long_note = encode(speak(f"{MEETING} {MEETING} {FOX}", tmp_path / "long.wav"), ".ogg")
    assert long_note.stat().st_size < MAX_BYTES
    refused(post(limited, "long.ogg", long_note.read_bytes()), 413, "GPU_MAX_AUDIO_SECONDS", f"{MAX_SECONDS}s")


def test_the_service_still_serves_after_bad_input(limited: ServiceProcess, fox: Path) -> None:
    response = post(limited, "fox.ogg", fox.read_bytes(), model="whisper-1")
    assert response.status_code == 200 and wer(FOX, response.json()["text"]) <= 0.3, response.text


def test_no_transcription_model_configured(service: ServiceProcess, fox: Path) -> None:
    refused(post(service, "fox.ogg", fox.read_bytes()), 404, "MODEL_TRANSCRIBE")


def test_the_api_key_is_required(keyed_service: ServiceProcess, fox: Path) -> None:
    without = post(keyed_service, "fox.ogg", fox.read_bytes())
    assert without.status_code == 401, without.text
    answer = without.json()  # an OpenAI route: OpenAI's error shape beside `detail`, as its other failures
    assert answer["error"]["type"] == "authentication_error" and answer["error"]["message"] == answer["detail"]
    assert "X-API-Key" in answer["detail"]
    plain = httpx.post(f"{keyed_service.url}/embed", json={"texts": ["a"]}, timeout=60)
    assert plain.status_code == 401 and set(plain.json()) == {"detail"}  # our own routes keep `detail` alone
    url = f"{keyed_service.url}{TRANSCRIPTIONS}"
    with_key = httpx.post(url, files={"file": ("fox.ogg", fox.read_bytes())}, timeout=60,
                          headers={"Authorization": "Bearer s3cret-test-key-123"})
    refused(with_key, 404, "MODEL_TRANSCRIBE")  # past the key; this host has no speech model


def test_a_decoder_that_runs_out_of_time_is_killed(fox: Path) -> None:
    decoders = Decoders()
    try:
        with pytest.raises(Unprocessable, match="GPU_DECODE_TIMEOUT"):
            asyncio.run(decoders.decode(fox.read_bytes(), filename="fox.ogg", max_seconds=60, timeout_s=0.001))
        samples = asyncio.run(decoders.decode(fox.read_bytes(), filename="fox.ogg", max_seconds=60, timeout_s=30))
    finally:
        decoders.close()
    assert 2.0 < samples.shape[0] / 16_000 < 6.0 and float(abs(samples).max()) > 0.05
