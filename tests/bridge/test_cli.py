"""The command-line entry points as a user runs them."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gpu_protocol.versions import PROTOCOL_VERSION, RELEASES
from mcp_bridge.embedded import free_port
from tests.support import ROOT
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # every test here runs the console scripts as processes


def ended(pid: str) -> bool:
    """The process `pid` is gone or a zombie (it has exited; its parent has not collected it)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HOME": str(ROOT / "tests"), **(env or {})}
    full_env.pop("GPU_BRIDGE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "mcp_bridge", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def test_check_prints_a_table_and_exits_zero(service: ServiceProcess, keyed_service: ServiceProcess,
                                              tmp_path: Path) -> None:
    config = tmp_path / "pool.json"
    config.write_text(json.dumps({"hosts": [
        {"name": "good", "url": service.url},
        {"name": "badkey", "url": keyed_service.url, "apiKey": "definitely-wrong"},
        {"name": "gone", "url": f"http://127.0.0.1:{free_port()}"},
    ]}))
    out = run("--config", str(config), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    table = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in ("good", "badkey", "gone")}
    assert " ok " in table["good"] and "all-MiniLM-L6-v2" in table["good"] and "cpu" in table["good"]
    assert f" {PROTOCOL_VERSION} ({RELEASES[PROTOCOL_VERSION]}) " in table["good"], "its protocol version and release"
    assert "FAIL" in table["badkey"] and "401" in table["badkey"]
    assert "FAIL" in table["gone"]
    assert "1/3 host(s) usable" in out.stdout
    queues = out.stdout.split("queues per class")[1].splitlines()
    assert any(line.split(":")[0].strip() == "good" and "interactive 0, batch 0" in line for line in queues), queues
    # its own fair share would be empty (a fresh process): it says where a running bridge's figures are
    assert "shard(s) waiting" not in out.stdout and "GET /metrics" in out.stdout and "gpu_status" in out.stdout
    assert "definitely-wrong" not in out.stdout + out.stderr


def test_check_fails_when_no_host_is_usable() -> None:
    out = run("--url", f"http://127.0.0.1:{free_port()}", "--check", "--timeout", "2")
    assert out.returncode == 1 and "0/1 host(s) usable" in out.stdout


def test_invalid_config_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"hosts": [{"url": "http://x:1", "wieght": 2}]}))
    out = run("--config", str(config))
    assert out.returncode == 2 and "hosts.0.wieght" in out.stderr and "unknown field" in out.stderr


def test_service_refuses_invalid_settings() -> None:
    out = subprocess.run([sys.executable, "-m", "gpu_service", "--port", str(free_port())], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "GPU_MAX_QUEUE": "lots"})
    assert out.returncode == 2 and "GPU_MAX_QUEUE" in out.stderr


def make_run_command(port: int) -> tuple[dict[str, str], list[str]]:
    """What `make run PORT=<port>` runs (`make -n`: nothing is run): its variables, and `gpu-bridge`'s arguments."""
    printed = subprocess.run(["make", "-n", "run", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=60).stdout
    words = shlex.split(next(line for line in printed.splitlines() if "gpu-bridge --transport" in line))
    program = next(i for i, word in enumerate(words) if word.endswith("gpu-bridge"))
    return dict(word.split("=", 1) for word in words[:program]), words[program + 1:]


def test_embedded_service_starts_and_stops_with_the_bridge(tmp_path: Path) -> None:
    """No hosts configured: `gpu-bridge --transport http` runs a local service; Ctrl-C stops both. Run as
    `make run` runs it (its variables: MODEL_SPEAK reaches the embedded service, which speaks)."""
    port = free_port()
    variables, arguments = make_run_command(port)
    assert variables.get("MODEL_SPEAK") and arguments[-2:] == ["--port", str(port)]
    env = {**os.environ, "HOME": str(tmp_path), **variables}
    env.pop("GPU_BRIDGE_URLS", None)
    proc = subprocess.Popen([sys.executable, "-m", "mcp_bridge", *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 120
        banner = ""
        while time.monotonic() < deadline and "Press Ctrl-C" not in banner:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            banner += line
        assert f"http://127.0.0.1:{port}/mcp" in banner
        assert "npx @modelcontextprotocol/inspector@2.12.0 --cli" in banner and '"mcpServers"' in banner
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "the embedded gpu-service runs as a child"
        assert httpx.post(f"http://127.0.0.1:{port}/mcp", json={}).status_code != 404
        spoken = httpx.post(f"http://127.0.0.1:{port}/v1/audio/speech", timeout=120, json={
            "model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav"})
        assert spoken.status_code == 200 and spoken.content.startswith(b"RIFF"), spoken.text[:300]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert "bridge stopped" in (proc.stderr.read() if proc.stderr else ""), "clean shutdown ran"
        wait_until(lambda: all(map(ended, children)), timeout=10,
                   message=f"the embedded gpu-service (children {children}) still runs after Ctrl-C")
    finally:
        if proc.poll() is None:
            proc.kill()
