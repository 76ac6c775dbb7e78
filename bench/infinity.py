"""Infinity (`infinity-emb`, torch engine): the embedding server a user would pick instead of ours.

`bench/peers.py` installs it into its own virtual environment under `.cache/` (never into the
project's) and starts it with its defaults. Every package version is pinned in
`bench/infinity-constraints.txt` (the set pip resolved for infinity-emb 0.0.78 on 2026-11-25), so
the install is the same on every machine; torch is installed first, alone, so pip takes the same
torch 2.13.0 build our service runs on (the CPU wheel here) and the constraints keep it there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.common import ROOT, ServerProcess, free_port

INFINITY_VERSION = "0.0.78"
TORCH_VERSION = "2.13.0"
CONSTRAINTS = ROOT / "bench" / "infinity-constraints.txt"
VENV = ROOT / ".cache" / "peers" / f"infinity-emb-{INFINITY_VERSION}"
EMBEDDINGS_PATH = "/embeddings"
"""Its OpenAI-style endpoint (no `/v1` unless started with `--url-prefix /v1`)."""


def install() -> Path:
    """The venv's `infinity_emb` command: installed on first use (about a minute), reused after
    while the constraints file is unchanged."""
    executable = VENV / "bin" / "infinity_emb"
    marker = VENV / ".installed-with"
    wanted = CONSTRAINTS.read_text()
    if executable.exists() and marker.exists() and marker.read_text() == wanted:
        return executable
    print(f"installing infinity-emb {INFINITY_VERSION} into {VENV.relative_to(ROOT)} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    subprocess.run([*pip, f"torch=={TORCH_VERSION}"], check=True)
    subprocess.run([*pip, "-c", str(CONSTRAINTS), f"infinity-emb[server,torch]=={INFINITY_VERSION}"], check=True)
    marker.write_text(wanted)
    return executable


def infinity_process(model_dir: str) -> ServerProcess:
    """`infinity_emb v2` on loopback with its default settings, serving the model in `model_dir`.
    Only the address, the port and the model are given; offline, and its usage statistics off
    (they would try the network)."""
    port = free_port()
    command = [str(install()), "v2", "--model-id", model_dir, "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess("infinity", command, port, env={"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"})
    server.env.pop("PYTHONPATH", None)  # our checkout has no business in its interpreter
    return server
