"""OpenClaw's voice notes on the GPU pool: `openclaw infer audio transcribe` (OpenClaw 2026.9.6 from npm)
on an OGG/Opus voice note that espeak-ng spoke, both ways the README gives:

- the plugin's media-understanding provider `gpu-bridge`, served by the bridge the plugin starts
  (`--model gpu-bridge/default`, or a `tools.media.models` entry naming the model);
- the zero-code way: OpenClaw's own `openai` provider with `baseUrl` at a bridge's `/v1`.

These are the plumbing tests: a stand-in (tests/support/transcription_standin.py) is where the bridge's
`POST /v1/audio/transcriptions` and `POST /v1/audio/speech` would be: as the plugin's `bridgeCommand`,
and standalone for the `openai` provider. They check what OpenClaw and the plugin send (multipart fields,
the file's bytes, the token, model, language, prompt; the speech format for an audio file, a voice note
and telephony) and what they make of the answers and errors. The real chain (two GPU services, real
bridges, one host killed) is test_openclaw_voice.py. Everything runs in one loopback-only network
namespace, as in test_openclaw.py.
"""

from __future__ import annotations

import json
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
    TOKEN,
    OpenClaw,
    VoiceNote,
    install,
    set_plugin_config,
    transcribe,
    zero_code_config,
)
from tests.support.transcription_standin import (
    BUSY_INPUT,
    MISSING_MODEL,
    SLOW_MODEL,
    speech_for,
    transcript_for,
)

pytestmark = pytest.mark.slow  # every test here starts processes (OpenClaw, espeak-ng, ffmpeg, a bridge)


# --------------------------------------------------------------------------- plumbing, with a stand-in

@dataclass
class StandIn:
    shim: Path
    record: Path
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if "path" in line]

    def disconnects(self) -> int:
        """How many slow requests ended by their client going away."""
        return sum(1 for line in self.lines() if "disconnected" in line)


@pytest.fixture(scope="module")
def standin(openclaw: OpenClaw) -> StandIn:
    tmp = openclaw.tmp
    record, log, shim = tmp / "standin-requests.jsonl", tmp / "standin.log", tmp / "bin" / "standin-bridge"
    shim.write_text(f'#!/bin/sh\nexport PYTHONPATH="{ROOT}" STANDIN_RECORD="{record}"\n'
                    f'exec "{sys.executable}" -m tests.support.transcription_standin "$@" 2>>"{log}"\n')
    shim.chmod(0o755)
    return StandIn(shim, record, log)


def last_request(standin: StandIn, before: int) -> dict[str, Any]:
    received = standin.requests()[before:]
    assert len(received) == 1, received
    return received[0]


def test_the_plugin_declares_a_speech_to_text_provider(openclaw: OpenClaw) -> None:
    inspected = openclaw("plugins", "inspect", PLUGIN_ID).stdout
    assert "media-understanding: gpu-bridge" in inspected, inspected


@pytest.mark.soak  # the real chain (test_openclaw_voice.py) runs this way end to end in `make test`
def test_plumbing_plugin_way_sends_the_note_to_its_bridge(openclaw: OpenClaw, standin: StandIn,
                                                          voice_note: VoiceNote) -> None:
    """`--model gpu-bridge/<anything>` reaches the plugin's provider without any API key; OpenClaw
    hands it the declared default model, which the plugin leaves to the pool (no `model` field)."""
    set_plugin_config(openclaw, {"bridgeCommand": str(standin.shim)})
    openclaw.update_config(tools={})
    before = len(standin.requests())
    answer = transcribe(openclaw, voice_note, "gpu-bridge/default", "--language", "en", "--prompt", "Groceries")
    assert answer["provider"] == "gpu-bridge"
    assert answer["outputs"][0]["text"] == transcript_for("note.ogg", voice_note.size)
    got = last_request(standin, before)
    assert got["path"] == "/v1/audio/transcriptions" and got["bearer_ok"] is True
    assert got["content_type"] == "multipart/form-data"
    assert got["fields"] == {"language": "en", "prompt": "Groceries", "response_format": "json"}
    assert got["file"] == {"name": "note.ogg", "type": "audio/ogg", "size": voice_note.size,
                           "sha256": voice_note.sha256}
    assert "stdin closed: stopping" in standin.log.read_text(), "the bridge was not stopped at the command's end"


def test_plumbing_a_media_models_entry_passes_its_model(openclaw: OpenClaw, standin: StandIn,
                                                        voice_note: VoiceNote) -> None:
    set_plugin_config(openclaw, {"bridgeCommand": str(standin.shim)})
    openclaw.update_config(tools={"media": {"models": [
        {"provider": "gpu-bridge", "model": "whisper-small", "capabilities": ["audio"]}]}})
    before = len(standin.requests())
    answer = transcribe(openclaw, voice_note, "gpu-bridge/whisper-small")
    assert answer["provider"] == "gpu-bridge" and answer["model"] == "whisper-small"
    assert last_request(standin, before)["fields"] == {"model": "whisper-small", "response_format": "json"}


def test_plumbing_the_pools_errors_reach_the_user_without_the_token(openclaw: OpenClaw, standin: StandIn,
                                                                    voice_note: VoiceNote) -> None:
    set_plugin_config(openclaw, {"bridgeCommand": str(standin.shim)})
    openclaw.update_config(tools={"media": {"models": [
        {"provider": "gpu-bridge", "model": MISSING_MODEL, "capabilities": ["audio"]}]}})
    failed = openclaw("infer", "audio", "transcribe", "--file", str(voice_note.path), "--model",
                      f"gpu-bridge/{MISSING_MODEL}", "--json", check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert f"gpu-bridge: HTTP 404: model '{MISSING_MODEL}' is not served by any host of the pool" in said, said
    assert "Bearer" not in said

    set_plugin_config(openclaw, {"bridgeCommand": str(openclaw.tmp / "no-such-bridge")})
    failed = openclaw("infer", "audio", "transcribe", "--file", str(voice_note.path), "--model",
                      "gpu-bridge/default", "--json", check=False)
    assert failed.returncode != 0 and "was not found" in failed.stdout + failed.stderr, failed.stderr[-2000:]


def test_plumbing_openclaws_timeout_ends_the_request(openclaw: OpenClaw, standin: StandIn,
                                                     voice_note: VoiceNote) -> None:
    """OpenClaw hands providers a timeout, not a signal: the plugin aborts its request to the bridge
    when it runs out (the bridge cancels the work on the pool when its client goes away)."""
    set_plugin_config(openclaw, {"bridgeCommand": str(standin.shim)})
    openclaw.update_config(tools={"media": {"models": [
        {"provider": "gpu-bridge", "model": SLOW_MODEL, "capabilities": ["audio"], "timeoutSeconds": 2}]}})
    gone = standin.disconnects()
    failed = openclaw("infer", "audio", "transcribe", "--file", str(voice_note.path), "--model",
                      f"gpu-bridge/{SLOW_MODEL}", "--json", check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "gpu-bridge: no transcript within 2s" in said, said[-2000:]
    assert standin.disconnects() == gone + 1, "the request to the bridge was left running"


DRIVER = """
// Loads the plugin as OpenClaw does and calls its speech-to-text provider directly: an abort signal
// (OpenClaw's type has one; its CLI does not pass it) and a bridge that cannot start.
const [entry, shim, note, slowModel] = process.argv.slice(2);
const { default: plugin } = await import(entry);
const { readFileSync } = await import("node:fs");
const providers = [];
const disposers = [];
const register = (config) => plugin.register({
  registrationMode: "full", pluginConfig: config, logger: { info() {}, warn() {}, error() {}, debug() {} },
  registerMediaUnderstandingProvider: (p) => providers.push(p),
  lifecycle: { onDispose: (f) => disposers.push(f) }, on: () => {},
});
register({ bridgeCommand: shim });
register({ bridgeCommand: shim + "-missing" });
const [good, broken] = providers;
const request = { buffer: readFileSync(note), fileName: "note.ogg", mime: "audio/ogg", timeoutMs: 60000 };
const abort = new AbortController();
setTimeout(() => abort.abort(), 1500);
let aborted = null;
try {
  await good.transcribeAudio({ ...request, model: slowModel, signal: abort.signal });
} catch (err) {
  aborted = err.name;
}
const done = await good.transcribeAudioWithContext({ ...request, model: "default", language: "en", cfg: {} });
const refused = await broken.transcribeAudioWithContext({ ...request, model: "default", cfg: {} });
for (const dispose of disposers) await dispose();
console.log(JSON.stringify({ id: good.id, capabilities: good.capabilities, defaultModels: good.defaultModels,
  auth: good.resolveAuth({}).kind, aborted, done, refused: { ok: refused.ok, message: refused.error.message } }));
"""


def test_plumbing_the_provider_honours_abort_and_reports_a_bridge_that_cannot_start(
    standin: StandIn, voice_note: VoiceNote, tmp_path: Path
) -> None:
    driver = tmp_path / "driver.mjs"
    driver.write_text(DRIVER)
    gone = standin.disconnects()
    out = subprocess.run([str(install() / "node"), str(driver), str(ROOT / "openclaw" / "index.js"), str(standin.shim),
                          str(voice_note.path), SLOW_MODEL], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["id"] == "gpu-bridge" and result["capabilities"] == ["audio"]
    assert result["defaultModels"] == {"audio": "default"} and result["auth"] == "none"
    assert result["aborted"] == "AbortError" and standin.disconnects() == gone + 1
    assert result["done"] == {"ok": True, "value": {"text": transcript_for("note.ogg", voice_note.size)}}
    assert result["refused"]["ok"] is False and "was not found" in result["refused"]["message"]


@pytest.fixture(scope="module")
def standalone_standin(openclaw: OpenClaw, standin: StandIn) -> Iterator[str]:
    """The stand-in as a standalone bridge with the token TOKEN: its /v1 URL."""
    port = free_port()
    process = subprocess.Popen([*openclaw.namespace.prefix, str(standin.shim), "--port", str(port),
                                "--auth-token", TOKEN], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and "is ready at" in process.stdout.readline()
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.soak  # the real chain (test_openclaw_voice.py) runs this way end to end in `make test`
def test_plumbing_zero_code_way_sends_the_note_with_the_key(openclaw: OpenClaw, standin: StandIn,
                                                            standalone_standin: str, voice_note: VoiceNote) -> None:
    openclaw.update_config(**zero_code_config(standalone_standin, "whisper-1", private_network=False))
    refused = openclaw("infer", "audio", "transcribe", "--file", str(voice_note.path), "--model", "openai/whisper-1",
                       "--json", check=False)
    assert refused.returncode != 0 and "SsrFBlockedError" in refused.stdout + refused.stderr, refused.stderr[-2000:]

    openclaw.update_config(**zero_code_config(standalone_standin, "whisper-1"))
    before = len(standin.requests())
    answer = transcribe(openclaw, voice_note, "openai/whisper-1")
    assert answer["provider"] == "openai" and answer["model"] == "whisper-1"
    assert answer["outputs"][0]["text"] == transcript_for("note.ogg", voice_note.size)
    got = last_request(standin, before)
    assert got["bearer_ok"] is True and got["fields"]["model"] == "whisper-1"
    assert got["file"]["sha256"] == voice_note.sha256


# --------------------------------------------------------------------------- speech synthesis, with the stand-in

def speak(openclaw: OpenClaw, output: Path) -> dict[str, Any]:
    """`openclaw infer tts convert --json`: the envelope (provider, outputs[0].path/format/voiceCompatible)."""
    out = openclaw("infer", "tts", "convert", "--text", "Your build is complete.", "--output", str(output), "--json")
    return json.loads(out.stdout[out.stdout.index("{"):])  # type: ignore[no-any-return]


def test_plumbing_the_plugins_speech_provider_is_listed_and_speaks_through_its_bridge(
    openclaw: OpenClaw, standin: StandIn
) -> None:
    """`tts.provider: "gpu-bridge"`: an audio file is MP3, with the settings of `tts.providers.gpu-bridge`,
    sent to the plugin's bridge without any API key. (A voice note needs a channel to be configured: the
    driver below asks for one directly.)"""
    set_plugin_config(openclaw, {"bridgeCommand": str(standin.shim)})
    openclaw.update_config(tools={}, models={}, tts={"provider": "gpu-bridge", "providers": {
        "gpu-bridge": {"speakerVoice": "nova", "speed": 1.25}}})
    listed = json.loads(openclaw("infer", "tts", "providers", "--json").stdout)
    assert "gpu-bridge" in json.dumps(listed), listed
    before = len(standin.requests())
    target = openclaw.tmp / "spoken.mp3"
    answer = speak(openclaw, target)
    assert answer["provider"] == "gpu-bridge" and answer["outputs"][0]["format"] == "mp3", answer
    assert target.read_bytes() == speech_for("mp3")
    got = last_request(standin, before)
    assert got["path"] == "/v1/audio/speech" and got["bearer_ok"] is True
    assert got["body"] == {"input": "Your build is complete.", "voice": "nova", "response_format": "mp3", "speed": 1.25}


SPEECH_DRIVER = """
// The plugin's speech provider as OpenClaw's channels, its telephony path and its retry logic see it: a voice
// note is Opus, a call 24 kHz PCM, and a refusal of the pool's an error with status and retryAfterMs.
const [entry, shim, busy] = process.argv.slice(2);
const { default: plugin } = await import(entry);
let provider;
const disposers = [];
plugin.register({
  registrationMode: "full", pluginConfig: { bridgeCommand: shim }, logger: { info() {}, warn() {}, error() {}, debug() {} },
  registerSpeechProvider: (p) => { provider = p; },
  lifecycle: { onDispose: (f) => disposers.push(f) }, on: () => {},
});
const request = { cfg: {}, providerConfig: provider.resolveConfig({ rawConfig: { provider: "gpu-bridge" } }), timeoutMs: 30000 };
const note = await provider.synthesize({ ...request, text: "Your table is ready.", target: "voice-note" });
const call = await provider.synthesizeTelephony({ ...request, text: "Your table is ready." });
let refused;
try {
  await provider.synthesize({ ...request, text: busy, target: "audio-file" });
} catch (err) {
  refused = { message: err.message, status: err.status, retryAfterMs: err.retryAfterMs, code: err.code };
}
const voices = await provider.listVoices({});
for (const dispose of disposers) await dispose();
console.log(JSON.stringify({ configured: provider.isConfigured({ providerConfig: {}, timeoutMs: 1 }),
  note: { ...note, audioBuffer: note.audioBuffer.toString() },
  call: { audio: call.audioBuffer.toString(), outputFormat: call.outputFormat, sampleRate: call.sampleRate },
  refused, voices: voices.map((v) => v.id) }));
"""


def test_plumbing_a_voice_note_is_opus_a_call_24_khz_pcm_and_a_busy_pool_says_how_long_to_wait(standin: StandIn,
                                                                                   tmp_path: Path) -> None:
    driver = tmp_path / "speech-driver.mjs"
    driver.write_text(SPEECH_DRIVER)
    before = len(standin.requests())
    out = subprocess.run([str(install() / "node"), str(driver), str(ROOT / "openclaw" / "index.js"), str(standin.shim),
                          BUSY_INPUT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["configured"] is True
    assert result["note"] == {"audioBuffer": speech_for("opus").decode(), "outputFormat": "opus",
                              "fileExtension": ".opus", "voiceCompatible": True}
    assert result["call"] == {"audio": speech_for("pcm").decode(), "outputFormat": "pcm", "sampleRate": 24000}
    assert [r["body"]["response_format"] for r in standin.requests()[before:]] == ["opus", "pcm", "mp3"]
    assert result["refused"] == {"message": "gpu-bridge: HTTP 429: every host is busy; retry later", "status": 429,
                                 "retryAfterMs": 7000, "code": "hosts_busy"}
    assert {"alloy", "nova", "standin-voice"} <= set(result["voices"])
