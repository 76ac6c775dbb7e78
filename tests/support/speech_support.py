"""Test speech for the transcription tests: espeak-ng speaks sentences we chose, ffmpeg encodes them.

Both are Debian packages the Makefile installs (`make speech-tools`). Files are made once per test
module in a temporary directory; a small word error rate helper compares transcripts.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from bench.speech_corpus import word_errors

FOX = "The quick brown fox jumps over the lazy dog."
WEATHER = ("The weather today is sunny with a light breeze from the west, "
           "and tomorrow will bring rain in the afternoon.")
MEETING = ("Please send the quarterly report to the finance team before Friday, "
           "and remember to book the meeting room for our planning session next week.")
SENTENCES = {"fox": FOX, "weather": WEATHER, "meeting": MEETING}

SPEECH_ENV = {"MODEL_TRANSCRIBE": "tiny.en", "GPU_WARM_DEFAULTS": "transcribe"}
"""A service with the bundled Whisper tiny.en as its default, loaded at start-up (the embedding models, which
speech tests do not use, load on a first request only: a start without importing sentence-transformers)."""


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length (the benchmark's counting)."""
    errors, reference_words = word_errors(reference, hypothesis)
    return errors / max(1, reference_words)


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run `make speech-tools` (apt-get install espeak-ng ffmpeg)")


def speak(text: str, path: Path) -> Path:
    """A WAV of espeak-ng saying `text` (22.05 kHz mono 16-bit)."""
    _need("espeak-ng")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def with_silence(source: Path, path: Path, before_s: float = 0.0, after_s: float = 0.0,
                 then: Path | None = None) -> Path:
    """`source` with silence around it (and `then` after the silence): one WAV."""
    with wave.open(str(source)) as w:
        params, frames = w.getparams(), w.readframes(w.getnframes())
    tail = b""
    if then is not None:
        with wave.open(str(then)) as w:
            tail = w.readframes(w.getnframes())
    rate, width = params.framerate, params.sampwidth
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(b"\0" * int(before_s * rate) * width + frames + b"\0" * int(after_s * rate) * width + tail)
    return path


def silence(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\0" * 2 * int(seconds * 16_000))
    return path


def encode(wav: Path, suffix: str) -> Path:
    """`wav` as .ogg (Opus, the voice-note format of WhatsApp and Telegram), .mp3 or .flac."""
    _need("ffmpeg")
    codec = {".ogg": ["-c:a", "libopus", "-b:a", "32k"], ".mp3": ["-c:a", "libmp3lame"], ".flac": []}[suffix]
    out = wav.with_suffix(suffix)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), *codec, str(out)], check=True)
    return out


def voice_notes(directory: Path) -> dict[str, Path]:
    """One OGG/Opus voice note per sentence, named after it."""
    return {name: encode(speak(text, directory / f"{name}.wav"), ".ogg") for name, text in SENTENCES.items()}
