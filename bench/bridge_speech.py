"""A long recording through the bridge: sent whole to one service vs cut at silences over two (issue 22).

The recording is espeak-ng speaking three sentences six times with pauses (about 2 minutes, OGG/Opus),
transcribed with Whisper tiny.en (`MODEL_TRANSCRIBE=tiny.en`) by the bridge's `GpuClient.transcribe`:
(1) one service, the file whole; (2) two services, the bridge cutting it in two at silences (PyAV in a
child process) and merging the parts. Both services run on this machine and share its CPU, so (2) shows
the bridge's decode, cut and merge overhead, not the speed-up two GPU hosts give. Best of 3 each.
Run: `.venv/bin/python -m bench.bridge_speech` (needs espeak-ng and ffmpeg); `--repeats 33` makes the
recording about 10 minutes long.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import wave
from pathlib import Path

from bench.common import gpu_service_process, save, table
from gpu_protocol.transcribe import TranscriptionOptions
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import parse_config
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.protocols.speech import AudioRequest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "The weather today is sunny with a light breeze from the west, and tomorrow will bring rain in the afternoon.",
    "Please send the quarterly report to the finance team before Friday, and remember to book the meeting room.",
]
REPEATS = 6
ENV = {"MODEL_TRANSCRIBE": "tiny.en", "GPU_WARM_DEFAULTS": "1"}


def recording(directory: Path, repeats: int = REPEATS) -> bytes:
    pieces = []
    for i, text in enumerate(SENTENCES):
        path = directory / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        pieces.append(path)
    with wave.open(str(pieces[0])) as w:
        params = w.getparams()
    pause = b"\0" * int(1.5 * params.framerate) * params.sampwidth
    long = directory / "long.wav"
    with wave.open(str(long), "wb") as out:
        out.setparams(params)
        for _ in range(repeats):
            for piece in pieces:
                with wave.open(str(piece)) as w:
                    out.writeframes(w.readframes(w.getnframes()) + pause)
    ogg = directory / "long.ogg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(long), "-c:a", "libopus", "-b:a", "32k",
                    str(ogg)], check=True)
    return ogg.read_bytes()


async def timed(urls: list[str], audio: bytes, split_above: float) -> tuple[float, int, float, str]:
    cfg = parse_config({"hosts": [{"url": u} for u in urls], "timeout": 600,
                        "audio": {"splitAboveSeconds": split_above}}, "bench")
    pool = HostPool(cfg)
    gpu = GpuClient(cfg, pool)
    request = AudioRequest(audio, "long.ogg", TranscriptionOptions(response_format="verbose_json"))
    try:
        await gpu.transcribe(request)  # warm: connections, the services' first batch
        best, outcome = float("inf"), None
        for _ in range(3):
            started = time.perf_counter()
            outcome = await gpu.transcribe(request)
            best = min(best, time.perf_counter() - started)
        assert outcome is not None
        return best, outcome.parts, outcome.transcription.duration, outcome.transcription.text
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge_speech", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"times the three sentences are spoken (default {REPEATS}: about 2 minutes; 33: about 10)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        audio = recording(Path(tmp), args.repeats)
    services = [gpu_service_process(ENV).start() for _ in range(2)]
    try:
        one = asyncio.run(timed([services[0].url], audio, 0))
        two = asyncio.run(timed([s.url for s in services], audio, 60))
    finally:
        for svc in services:
            svc.stop()
    rows = [["1 service, whole", f"{one[2]:.0f}", one[1], f"{one[0]:.2f}"],
            ["2 services, split at silences", f"{two[2]:.0f}", two[1], f"{two[0]:.2f}"]]
    print(table("A long recording through the bridge (Whisper tiny.en, CPU, both services on one machine)",
                ["setup", "audio s", "parts", "seconds (best of 3)"], rows))
    save("bridge_speech", {"one_host_s": one[0], "two_hosts_s": two[0], "audio_s": one[2], "parts": two[1]})


if __name__ == "__main__":
    main()
