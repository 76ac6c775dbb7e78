"""Where to cut a long recording, and its parts as WAV files: pure numpy over 16 kHz mono samples.

Each cut is placed at the quietest moment near its target (equal shares of the recording): the
lowest RMS energy over a short moving window (a pause between words or sentences, not the
silence inside one word), so no word is split between two hosts. Parts go to the hosts as 16 kHz
mono 16-bit WAV (32 kB a second: a 10-minute part stays under OpenAI's 25 MiB limit).
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass

import numpy as np

from mcp_bridge.client.audio_decode import RATE

FRAME = RATE // 50
"""20 ms frames for the energy."""
SMOOTH_FRAMES = 15
"""The pause looked for: the quietest 300 ms."""
MAX_PART_S = 600.0
"""No part longer than 10 minutes (19 MB of WAV)."""
MIN_PART_S = 10.0
SEARCH_S = 30.0
"""How far from its target a cut may move (at most a quarter of a part either way)."""


@dataclass(frozen=True)
class Part:
    offset: float
    """Where the part starts in the recording, seconds."""
    seconds: float
    wav: bytes


def part_count(duration: float, hosts: int) -> int:
    """One part per host, more when parts would be over MAX_PART_S, fewer when under MIN_PART_S."""
    wanted = max(hosts, math.ceil(duration / MAX_PART_S))
    return max(1, min(wanted, int(duration // MIN_PART_S)))


def cut_points(pcm: np.ndarray, parts: int) -> list[int]:
    """Sample indices of the `parts - 1` cuts, increasing, each at the quietest moment near its target."""
    frames = len(pcm) // FRAME
    if parts <= 1 or frames < parts * SMOOTH_FRAMES:
        return []
    x = pcm[: frames * FRAME].astype(np.float32).reshape(frames, FRAME)
    energy = np.sqrt(np.mean(x * x, axis=1))
    smooth = np.convolve(energy, np.ones(SMOOTH_FRAMES, dtype=np.float32) / SMOOTH_FRAMES, mode="same")
    share = frames / parts
    reach = int(min(SEARCH_S * RATE / FRAME, share / 4))
    cuts: list[int] = []
    for i in range(1, parts):
        target = int(i * share)
        lo = max(target - reach, cuts[-1] // FRAME + 1 if cuts else 1)
        hi = min(target + reach + 1, frames - 1)
        best = lo + int(np.argmin(smooth[lo:hi])) if hi > lo else target
        cuts.append(best * FRAME + FRAME // 2)
    return cuts


def wav_bytes(pcm: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def split_audio(pcm: np.ndarray, parts: int) -> list[Part]:
    """The recording cut at `cut_points`, each part a WAV with its offset."""
    bounds = [0, *cut_points(pcm, parts), len(pcm)]
    return [Part(offset=lo / RATE, seconds=(hi - lo) / RATE, wav=wav_bytes(pcm[lo:hi]))
            for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]
