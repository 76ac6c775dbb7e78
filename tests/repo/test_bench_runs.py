"""The benchmarks run for real, with tiny parameters: the wrk script by a real wrk against a real server, and
bench/speech.py on our service (a process) and the in-process model. Their parts in-process:
tests/unit/test_bench.py."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench import wrk_load
from bench.peers_corpus import write_bodies
from mcp_bridge.embedded import free_port
from tests.support.waiting import wait_until


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server that records every body and refuses those that say "refuse" with 503."""
    seen: list[str] = []

    async def embed(request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        seen.append(body)
        return JSONResponse({"data": []}, status_code=503 if "refuse" in body else 200)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/embeddings", embed, methods=["POST"])]),
                                           host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, interval=0.01, message="the fake embeddings server did not start")
    yield f"http://127.0.0.1:{port}/embeddings", seen
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow  # runs wrk
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_wrk_script_picks_bodies_from_the_file_and_counts_refusals(
        recording_server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = recording_server
    bodies = [json.dumps({"input": [f"text {i}"]}) for i in range(20)] + [json.dumps({"input": ["refuse"]})]
    run = wrk_load.run(url, write_bodies(tmp_path / "bodies.txt", bodies), seconds=1, seed=7)
    assert set(seen) <= set(bodies) and len(set(seen)) > 10  # random picks from the file, nothing else
    # the server also saw the requests still in flight when wrk stopped (at most one per connection)
    assert run.requests <= len(seen) <= run.requests + wrk_load.CONNECTIONS
    assert 0 < run.non_2xx < run.requests
    assert run.texts_per_s(8) == pytest.approx((run.requests - run.non_2xx) * 8 / run.seconds)

    refused = wrk_load.run(url, write_bodies(tmp_path / "refused.txt", [bodies[-1]]), seconds=1, seed=7)
    assert refused.requests > 0 and refused.non_2xx == refused.requests and refused.texts_per_s(1) == 0


@pytest.mark.slow
def test_speech_bench_smoke_ours_and_in_process_on_two_voice_notes() -> None:
    """bench/speech.py end to end with tiny parameters: our service (a real process) and the in-process
    model transcribe two espeak-ng voice notes; the figures are not checked (speed is for bench/), only
    that each side ran and heard the words."""
    from bench import speech
    from bench.speech_corpus import MAX_NOTE_S, MIN_NOTE_S, voice_notes

    notes = voice_notes(2)
    assert all(MIN_NOTE_S <= n.seconds <= MAX_NOTE_S and n.path.suffix == ".ogg" for n in notes)
    sides = speech.start_sides(["ours", "sequential"], notes[0], {})
    try:
        results = speech.measure(sides, notes, clients=2, runs=1)
    finally:
        for side in sides:
            side.stop()
    assert [r.side for r in results] == ["ours (gpu-service)", "in-process WhisperModel.transcribe"]
    assert all(len(r.rates) == 1 and r.rates[0] > 0 and r.wer < 0.3 for r in results)
    assert speech.rows(results)[1][3].startswith("**")  # ours / in-process ratio


@pytest.mark.slow
def test_speak_bench_smoke_ours_and_piper_on_two_sentences() -> None:
    """bench/speak.py's parts with tiny parameters: our service (a real process) speaks two sentences at once,
    streams a short text (first audio before the whole) and hears its own speech back; piper's server takes
    the same load when its venv is already there (the smoke never installs it). Speed is not checked."""
    from bench import speak
    from bench.speak_sides import ours, piper, piper_python, stream

    texts = speak.SENTENCES[:2]
    sides = [ours({})]
    try:
        if piper_python(install=False) is not None:
            sides.append(piper())
        loads = speak.concurrent_load(sides, texts, runs=1)
        streamed = stream(sides[0].server.url, " ".join(speak.SENTENCES[:3]))
        wer = speak.round_trip_wer(sides[0].server.url, texts, loads[0].outcomes[0].wavs)
    finally:
        for side in sides:
            side.stop()
    assert all(load.best > 0 and load.outcomes[0].audio_s > 1.0 for load in loads)
    assert 0 < streamed.first_audio_s < streamed.whole_s and streamed.audio_s > 2.0
    assert wer <= 0.3
    assert len(speak.load_rows(loads)) == len(sides)
