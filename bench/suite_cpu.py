"""Where a command's CPU time goes, by kind of process: how docs/development.md splits the test suite's time.

Runs the command (by default `make test`'s pytest) and reads every process's CPU time (user + system) from
`/proc` once a second; a process is counted at the last value seen, less what it had used before the command
started. A process that lives under a second between two readings is missed, so the total comes out a little
under what `time` says. Linux only.

    python -m bench.suite_cpu                                   # the whole suite (~15 minutes on 2 cores)
    python -m bench.suite_cpu -- pytest -q tests/service/test_tls.py
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, table

KINDS = (
    ("openclaw-sqlite-readonly-child", "OpenClaw's state-reading helpers (node)"),
    ("openclaw", "OpenClaw commands (node)"),
    (".cache/releases", "gpu-service of the previous release"),
    ("-m gpu_service", "gpu-service"),
    ("service_zygote", "gpu-service (forked by the tests' zygote)"),
    ("mcp_bridge", "gpu-bridge"),
    ("gpu-bridge", "gpu-bridge"),
    ("decode_worker", "audio decoders"),
    ("pytest", "pytest and its workers"),
    ("xdist", "pytest and its workers"),
    ("node", "other node (npm, the Inspector)"),
)
TICKS = os.sysconf("SC_CLK_TCK")


def kind(command: str) -> str:
    return next((name for needle, name in KINDS if needle in command), "other")


def read_all() -> dict[int, tuple[float, str]]:
    """Every process now: pid -> (CPU seconds, command line)."""
    seen = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        seen[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / TICKS, command)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="*", help="what to run (default: the suite as `make test` runs it)")
    args = parser.parse_args()
    command = args.command or [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile"]
    before = {pid: cpu for pid, (cpu, _) in read_all().items()}
    cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    started = time.monotonic()
    run = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    while run.poll() is None:
        for pid, (seconds, line) in read_all().items():
            if pid != os.getpid():
                cpu[pid] = max(cpu.get(pid, 0.0), seconds - before.get(pid, 0.0))
                if line:
                    names.setdefault(pid, line)
        time.sleep(1.0)
    wall = time.monotonic() - started
    totals, counts = collections.Counter[str](), collections.Counter[str]()
    for pid, seconds in cpu.items():
        if seconds < 0.05:  # idle the whole time
            continue
        name = kind(names.get(pid, ""))
        totals[name] += seconds
        counts[name] += 1
    rows = [[name, round(seconds, 1), counts[name], round(seconds / counts[name], 1)]
            for name, seconds in totals.most_common()]
    table(f"CPU seconds by kind of process: {sum(totals.values()):.0f} s in {wall:.0f} s of wall time "
          f"({sum(totals.values()) / wall:.0%} of one core), exit code {run.returncode}",
          ["kind", "CPU s", "processes", "CPU s each"], rows)
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
