"""`wrk` as the load generator of `bench/peers.py`: a C client, so on 2 cores it does not steal the
servers' CPU the way a Python client would. Bodies are picked at random by `bench/peers.lua`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT

LUA_SCRIPT = ROOT / "bench" / "peers.lua"
CONNECTIONS = 64


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured. Latencies are over every request, answered or refused."""

    requests: int
    non_2xx: int
    socket_errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    def texts_per_s(self, texts_per_body: int) -> float:
        """Only requests answered 2xx count."""
        return (self.requests - self.non_2xx) * texts_per_body / self.seconds


def ensure_wrk() -> str:
    """The `wrk` executable, installed from Debian's packages when missing (as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("bench/peers.py needs wrk: sudo apt-get install -y wrk")
    print("installing wrk (apt-get)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def start(url: str, bodies_file: Path, seconds: int, seed: int) -> subprocess.Popen[str]:
    """A wrk run in the background (64 connections, one thread); `finish` reads its result."""
    command = [ensure_wrk(), "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "60s",
               "-s", str(LUA_SCRIPT), url, "--", str(bodies_file), str(seed)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> WrkRun:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr.strip() or stdout.strip()}")
    return parse_summary(stdout)


def run(url: str, bodies_file: Path, seconds: int, seed: int) -> WrkRun:
    return finish(start(url, bodies_file, seconds, seed))


def parse_summary(stdout: str) -> WrkRun:
    """The `PEERS_JSON {...}` line that `peers.lua`'s done() prints."""
    for line in stdout.splitlines():
        if line.startswith("PEERS_JSON "):
            raw = json.loads(line.removeprefix("PEERS_JSON "))
            return WrkRun(
                requests=raw["requests"],
                non_2xx=raw["non_2xx"],
                socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
                seconds=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3,
            )
    raise RuntimeError(f"no PEERS_JSON line in wrk's output:\n{stdout}")
