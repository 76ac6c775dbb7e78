"""The official `openai` client parses every response format of the service's speech routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.services import ServiceProcess
from tests.support.speech_support import FOX, MEETING, SPEECH_ENV, encode, speak, wer, with_silence

pytestmark = pytest.mark.slow  # espeak-ng, ffmpeg and service processes

SPOKEN = f"{MEETING} {FOX}"


@pytest.fixture(scope="module")
def speech_service() -> Iterator[ServiceProcess]:
    svc = ServiceProcess(env={**SPEECH_ENV, "API_KEY": "speech-key-123"}).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def note(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("speech")
    both = with_silence(speak(MEETING, directory / "meeting.wav"), directory / "both.wav", after_s=2,
                        then=speak(FOX, directory / "fox.wav"))
    return encode(both, ".ogg")


@pytest.fixture(scope="module")
def client(speech_service: ServiceProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{speech_service.url}/v1", api_key="speech-key-123", max_retries=0, timeout=120)


def transcribe(client: openai.OpenAI, note: Path, **options: Any) -> Any:
    with note.open("rb") as file:
        return client.audio.transcriptions.create(file=file, **{"model": "whisper-1", **options})


def test_json(client: openai.OpenAI, note: Path) -> None:
    result = transcribe(client, note)
    assert isinstance(result, openai.types.audio.Transcription)
    assert wer(SPOKEN, result.text) <= 0.3, result.text


def test_verbose_json_with_words(client: openai.OpenAI, note: Path) -> None:
    result = transcribe(client, note, model="tiny.en", response_format="verbose_json",
                        timestamp_granularities=["word", "segment"], language="en", temperature=0.0)
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.language == "en" and result.duration > 5
    assert result.segments and result.segments[0].start < result.segments[-1].end <= result.duration
    assert result.words and [w.start for w in result.words] == sorted(w.start for w in result.words)
    assert wer(SPOKEN, " ".join(w.word for w in result.words)) <= 0.3


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_text_srt_vtt(client: openai.OpenAI, note: Path, response_format: str) -> None:
    result = transcribe(client, note, response_format=response_format, prompt="A meeting and a fox.")
    assert isinstance(result, str)
    assert ("-->" in result) == (response_format != "text")
    assert result.startswith("WEBVTT") == (response_format == "vtt")
    assert "fox" in result.lower() and "report" in result.lower()


def test_errors_reach_the_client_as_openai_errors(client: openai.OpenAI, note: Path, tmp_path: Path) -> None:
    """The service answers `{"detail": ...}` like its other routes (the bridge speaks OpenAI's error
    shape); the client still raises the error class of the status."""
    not_audio = tmp_path / "note.ogg"
    not_audio.write_text("not a voice note")
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        transcribe(client, not_audio)
    assert "note.ogg" in refused.value.response.json()["detail"]
    with pytest.raises(openai.UnprocessableEntityError) as refused, note.open("rb") as file:
        client.audio.translations.create(model="whisper-1", file=file)
    assert "English-only" in refused.value.response.json()["detail"]
    with pytest.raises(openai.AuthenticationError):
        transcribe(client.with_options(api_key="wrong"), note)
