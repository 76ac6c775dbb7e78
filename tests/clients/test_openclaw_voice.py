"""OpenClaw's voice on the GPU pool, end to end with OpenClaw 2026.9.6 from npm: it hears (`openclaw infer
audio transcribe` on an OGG/Opus voice note that espeak-ng spoke) and it speaks (`openclaw infer tts convert`),
both ways each, on two real GPU services behind real bridges, then again with one host killed:

- the plugin's providers `gpu-bridge` (speech to text, text to speech), served by the bridge the plugin starts;
- the zero-code way: OpenClaw's own `openai` providers with their base URL at a standalone bridge's `/v1`.

One pool serves every test of this module (services are the slow part to start). The plumbing of the
same providers, with a stand-in bridge, is tested in test_openclaw_audio.py. Everything runs in one
loopback-only network namespace, as in test_openclaw.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_bridge.config import PLUGIN_ID
from mcp_bridge.embedded import free_port
from tests.support import ROOT
from tests.support.openclaw_support import (
    SPOKEN_WORDS,
    TOKEN,
    NamespacedService,
    OpenClaw,
    VoiceNote,
    install,
    set_plugin_config,
    transcribe,
    zero_code_config,
)
from tests.support.speech_support import SPEECH_ENV

pytestmark = pytest.mark.slow  # OpenClaw, two GPU services, bridges

REAL_MODEL = "tiny.en"
"""What the zero-code way names as `model`: the hosts' transcription model as the bridge calls it."""
VOICE_ENV = {**SPEECH_ENV, "MODEL_SPEAK": "en_US-joe-medium", "GPU_WARM_DEFAULTS": "transcribe,speak"}
REPLY = "The meeting moved to Thursday afternoon, in the small conference room near the kitchen."
REPLY_WORDS = ("meeting", "thursday", "afternoon", "conference", "kitchen")


@dataclass
class RealPool:
    hosts: list[NamespacedService]
    bridge_url: str
    bridge_log: Path


@pytest.fixture(scope="module")
def real_pool(openclaw: OpenClaw) -> Iterator[RealPool]:
    """Two GPU services with the default Whisper model and the bundled Piper voice, and a standalone HTTP bridge
    over both (the zero-code ways'); the plugin's own bridge gets the same two hosts. One pool for every test
    here, hearing and speaking: the last ones kill gpu-a."""
    hosts = [NamespacedService(openclaw.namespace, openclaw.tmp) for _ in range(2)]
    for host in hosts:
        host.env.update(VOICE_ENV)  # Whisper tiny.en to hear, the bundled Piper voice to speak
    standalone: subprocess.Popen[str] | None = None
    try:
        for host in hosts:
            host.start(wait=False)
        for host in hosts:
            host.wait_ready()
        pool = {"hosts": [{"name": f"gpu-{letter}", "url": h.url} for letter, h in zip("ab", hosts, strict=True)]}
        pool_file = openclaw.tmp / "audio-pool.json"
        pool_file.write_text(json.dumps(pool))
        set_plugin_config(openclaw, pool)
        port = free_port()
        log = openclaw.tmp / "audio-standalone-bridge.log"
        with open(log, "w") as err:
            standalone = subprocess.Popen(
                [*openclaw.namespace.prefix, sys.executable, "-m", "mcp_bridge", "--transport", "http", "--port",
                 str(port), "--auth-token", TOKEN, "--config", str(pool_file)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert standalone.stdout is not None
        while "is ready at" not in (ready := standalone.stdout.readline()):
            assert ready, f"the bridge did not start:\n{log.read_text()}"
        yield RealPool(hosts, f"http://127.0.0.1:{port}/v1", log)
    finally:
        if standalone is not None:
            standalone.terminate()
            standalone.wait(timeout=15)
        for host in hosts:
            host.stop()


def assert_heard(answer: dict[str, Any], provider: str) -> None:
    text = answer["outputs"][0]["text"].lower()
    assert answer["provider"] == provider
    assert all(word in text for word in SPOKEN_WORDS), text


def both_ways(openclaw: OpenClaw, pool: RealPool, note: VoiceNote) -> None:
    openclaw.update_config(tools={}, models={})  # no media models: `--model gpu-bridge/...` picks the plugin
    assert_heard(transcribe(openclaw, note, "gpu-bridge/default"), "gpu-bridge")
    openclaw.update_config(**zero_code_config(pool.bridge_url, REAL_MODEL))
    assert_heard(transcribe(openclaw, note, f"openai/{REAL_MODEL}"), "openai")


def test_voice_note_transcribed_on_the_gpu_pool_both_ways(openclaw: OpenClaw, real_pool: RealPool,
                                                          voice_note: VoiceNote) -> None:
    both_ways(openclaw, real_pool, voice_note)


# --------------------------------------------------------------------------- speaking (and, last, a dead host)

def openai_tts(pool: RealPool) -> dict[str, Any]:
    """Way (a): OpenClaw's built-in OpenAI speech provider at the bridge (a loopback base URL needs no
    private-network setting for TTS), with OpenAI's names, which every host answers to."""
    return {"provider": "openai", "providers": {"openai": {
        "baseUrl": pool.bridge_url, "apiKey": TOKEN, "model": "tts-1", "speakerVoice": "alloy"}}}


def spoken(openclaw: OpenClaw, provider: str, name: str, *extra: str) -> tuple[Path, dict[str, Any]]:
    """`openclaw infer tts convert` of REPLY into `name`: the file and what ffprobe says of its audio."""
    path = openclaw.tmp / name
    path.unlink(missing_ok=True)
    out = openclaw("infer", "tts", "convert", "--text", REPLY, "--output", str(path), "--json", *extra)
    answer = json.loads(out.stdout[out.stdout.index("{"):])
    assert answer["provider"] == provider, answer
    seconds, audio = probed(path)
    assert seconds > 2.0, (seconds, audio)  # the sentence takes about 5 s to say
    return path, audio


def probed(path: Path) -> tuple[float, dict[str, str]]:
    """What ffprobe says of an audio file: its duration in seconds, its container and codec."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration:stream=codec_name",
                            "-of", "json", str(path)], capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    return float(info["format"]["duration"]), {"format": info["format"]["format_name"],
                                               "codec": info["streams"][0]["codec_name"]}


def speak_both_ways(openclaw: OpenClaw, pool: RealPool, *, hear_back: bool) -> None:
    openclaw.update_config(tools={}, models={}, tts=openai_tts(pool))
    _, audio = spoken(openclaw, "openai", "openai-reply.mp3")
    assert audio == {"format": "mp3", "codec": "mp3"}
    openclaw.update_config(tts={"provider": "gpu-bridge"})
    reply, audio = spoken(openclaw, "gpu-bridge", "plugin-reply.mp3")
    assert audio == {"format": "mp3", "codec": "mp3"}
    if hear_back:  # what the pool said, heard by the pool
        text = transcribe(openclaw, VoiceNote(reply, "", 0), "gpu-bridge/default")["outputs"][0]["text"].lower()
        assert sum(word in text for word in REPLY_WORDS) >= 4, text


def test_replies_spoken_on_the_gpu_pool_both_ways(openclaw: OpenClaw, real_pool: RealPool) -> None:
    speak_both_ways(openclaw, real_pool, hear_back=True)


FORMATS_DRIVER = """
// The plugin's speech provider on the real pool, as a channel (a voice note) and a call see it.
const [entry, pluginConfig, out] = process.argv.slice(2);
const { default: plugin } = await import(entry);
const { writeFileSync } = await import("node:fs");
let provider;
const disposers = [];
plugin.register({
  registrationMode: "full", pluginConfig: JSON.parse(pluginConfig), logger: { info() {}, warn() {}, error() {}, debug() {} },
  registerSpeechProvider: (p) => { provider = p; },
  lifecycle: { onDispose: (f) => disposers.push(f) }, on: () => {},
});
const request = { cfg: {}, providerConfig: {}, timeoutMs: 120000, text: process.env.REPLY };
const note = await provider.synthesize({ ...request, target: "voice-note" });
const call = await provider.synthesizeTelephony(request);
writeFileSync(`${out}/note${note.fileExtension}`, note.audioBuffer);
writeFileSync(`${out}/call.pcm`, call.audioBuffer);
for (const dispose of disposers) await dispose();
console.log(JSON.stringify({ note: note.outputFormat, voiceCompatible: note.voiceCompatible, call: call.outputFormat,
  sampleRate: call.sampleRate }));
"""


def test_a_voice_note_is_opus_and_a_call_24_khz_pcm(openclaw: OpenClaw, real_pool: RealPool) -> None:
    driver = openclaw.tmp / "formats-driver.mjs"
    driver.write_text(FORMATS_DRIVER)
    config = {**json.loads(openclaw.config_path.read_text())["plugins"]["entries"][PLUGIN_ID]["config"],
              "bridgeCommand": str(openclaw.tmp / "bin" / "gpu-bridge")}
    out = subprocess.run([*openclaw.namespace.prefix, str(install() / "node"), str(driver),
                          str(ROOT / "openclaw" / "index.js"), json.dumps(config), str(openclaw.tmp)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "REPLY": REPLY})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {"note": "opus", "voiceCompatible": True, "call": "pcm", "sampleRate": 24000}
    assert probed(openclaw.tmp / "note.opus")[1] == {"format": "ogg", "codec": "opus"}
    call_seconds = (openclaw.tmp / "call.pcm").stat().st_size / 2 / 24000  # s16le mono
    assert call_seconds > 2.0 and abs(call_seconds - probed(openclaw.tmp / "note.opus")[0]) < 0.5


def test_voice_note_transcribed_with_a_dead_gpu_host(openclaw: OpenClaw, real_pool: RealPool,
                                                     voice_note: VoiceNote) -> None:
    real_pool.hosts[0].kill()  # gpu-a, kill -9
    both_ways(openclaw, real_pool, voice_note)


def test_replies_spoken_with_a_dead_gpu_host(openclaw: OpenClaw, real_pool: RealPool) -> None:
    real_pool.hosts[0].kill()  # gpu-a, kill -9 (if the test before has not: run alone)
    speak_both_ways(openclaw, real_pool, hear_back=False)
