"""npm packages the tests run (OpenClaw and its Node, the MCP Inspector), installed once into a cache
directory under .cache/. Two pytest-xdist workers may want the same cache at the same moment (the OpenClaw
CLI tests and the OpenClaw audio tests run in different files): an exclusive lock beside the cache makes the
second wait for the first's install instead of racing it inside the same node_modules."""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(cache: Path) -> Iterator[None]:
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def npm_install(cache: Path, *specs: str, env: dict[str, str] | None = None, scripts: bool = True) -> None:
    """`npm install` the specs into `cache` (made a private package first); npm's own error on failure."""
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "package.json").exists():
        (cache / "package.json").write_text(f'{{"name": "{cache.name}-cache", "private": true}}')
    command = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
               *([] if scripts else ["--ignore-scripts"]), *specs]
    out = subprocess.run(command, cwd=cache, timeout=900, capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"{' '.join(command)} failed ({out.returncode}) in {cache}:\n{out.stderr[-3000:]}"


def ensure(cache: Path, ready: Callable[[], bool], install: Callable[[], None]) -> None:
    """Run `install` under the cache's lock unless `ready()` says it is there (checked again once locked)."""
    if ready():
        return
    with locked(cache):
        if not ready():
            install()
