"""The speech benchmark's corpus: espeak-ng speaks seeded sentences, ffmpeg makes them voice notes.

Voice notes are OGG/Opus (the format of WhatsApp and Telegram voice notes) of 5 to 20 s, mixed
lengths; the long recording is many of those sentences with pauses between them, 10 minutes.
Files are made once into `.cache/speech-bench/` (keyed by the corpus' parameters) and reused.
The source text of every file is kept beside it: it is the reference for the word error rate.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT

CACHE = ROOT / ".cache" / "speech-bench"
MIN_NOTE_S, MAX_NOTE_S = 5.0, 20.0

_SUBJECTS = ["the project manager", "my neighbour", "our new client", "the delivery driver", "the doctor",
             "your sister", "the team in Berlin", "the landlord", "a friend from school", "the travel agent",
             "the support desk", "our accountant", "the school teacher", "the garden centre", "the mechanic"]
_VERBS = ["called to say", "wrote this morning that", "told me", "asked whether", "mentioned that",
          "just confirmed that", "is worried that", "promised that", "would like to know if", "reminded us that"]
_CLAUSES = ["the meeting moves to Thursday afternoon", "the parcel will arrive before noon tomorrow",
            "the invoice still has the wrong address on it", "the car needs new tyres before the winter",
            "we should book the tickets for the concert soon", "the kitchen will be painted next week",
            "the results of the blood test look normal", "the train was cancelled because of the storm",
            "the new printer does not connect to the network", "dinner is ready at seven in the evening",
            "the children want to visit the museum on Saturday", "the contract must be signed by Friday",
            "the garden hose is leaking again near the tap", "the flight lands an hour later than planned",
            "the budget for the marketing campaign was approved", "the heating in the office stopped working",
            "the bakery on the corner closes early on Sundays", "the dog has to see the vet next month",
            "the software update broke the login page", "the rent goes up at the start of the year"]
_TAILS = ["so please call me back when you can.", "and I will send the details by email.",
          "which is good news for all of us.", "but nobody knows why yet.", "so we need a plan by tonight.",
          "and that changes the schedule a little.", "so let me know what you think.",
          "and I am not sure what to do about it."]


@dataclass(frozen=True)
class Note:
    path: Path
    text: str
    seconds: float


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} is not installed: run `make speech-tools` (apt-get install espeak-ng ffmpeg)")


def sentence(rng: random.Random) -> str:
    return (f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_CLAUSES)}, "
            f"{rng.choice(_TAILS)}")


def _speak(text: str, wav: Path) -> float:
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    with wave.open(str(wav)) as w:
        return w.getnframes() / w.getframerate()


def _to_ogg(wav: Path) -> Path:
    out = wav.with_suffix(".ogg")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libopus", "-b:a", "32k",
                    str(out)], check=True)
    wav.unlink()
    return out


def _load(index: Path) -> list[Note] | None:
    if not index.is_file():
        return None
    rows = json.loads(index.read_text())
    notes = [Note(index.parent / r["file"], r["text"], r["seconds"]) for r in rows]
    return notes if all(n.path.is_file() for n in notes) else None


def _save(index: Path, notes: list[Note]) -> list[Note]:
    index.write_text(json.dumps([{"file": n.path.name, "text": n.text, "seconds": n.seconds} for n in notes]))
    return notes


def voice_notes(count: int, seed: int = 0) -> list[Note]:
    """`count` OGG/Opus voice notes of 5-20 s, each one to four sentences (mixed lengths)."""
    folder = CACHE / f"notes-{count}-{seed}"
    cached = _load(folder / "index.json")
    if cached is not None:
        return cached
    _need("espeak-ng")
    _need("ffmpeg")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    notes: list[Note] = []
    while len(notes) < count:
        text = " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))
        wav = folder / f"note-{len(notes):03d}.wav"
        seconds = _speak(text, wav)
        if MIN_NOTE_S <= seconds <= MAX_NOTE_S:
            notes.append(Note(_to_ogg(wav), text, round(seconds, 3)))
        else:
            wav.unlink()
    return _save(folder / "index.json", notes)


def recording(minutes: float = 10.0, seed: int = 1) -> Note:
    """One long OGG/Opus recording: sentences with 0.3-1.5 s pauses, `minutes` long."""
    folder = CACHE / f"recording-{minutes:g}-{seed}"
    cached = _load(folder / "index.json")
    if cached is not None:
        return cached[0]
    _need("espeak-ng")
    _need("ffmpeg")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    frames, texts, params = bytearray(), [], None
    piece = folder / "piece.wav"
    while params is None or len(frames) / (params.framerate * params.sampwidth) < minutes * 60:
        text = sentence(rng)
        _speak(text, piece)
        with wave.open(str(piece)) as w:
            params = w.getparams()
            frames += w.readframes(w.getnframes())
        frames += b"\0" * int(rng.uniform(0.3, 1.5) * params.framerate) * params.sampwidth
        texts.append(text)
    piece.unlink()
    wav = folder / "recording.wav"
    with wave.open(str(wav), "wb") as out:
        out.setparams(params)
        out.writeframes(bytes(frames))
    seconds = len(frames) / (params.framerate * params.sampwidth)
    return _save(folder / "index.json", [Note(_to_ogg(wav), " ".join(texts), round(seconds, 3))])[0]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word-level edit distance, reference words): summed over files, their ratio is the corpus WER."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[len(hyp)], len(ref)
