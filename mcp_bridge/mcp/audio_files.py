"""The audio files the tools touch: gpu_transcribe reads only under the configured `audio.allowedDirs`, and
gpu_speak writes only into `audio.outputDir` (`write_audio_file`: a new file of its own name, never one that
is there, never through a link).

A `path` argument lets any MCP client ask the bridge to read a file, so the bridge reads only
regular files under directories its user named. The path is resolved first (symlinks and `..`),
and what was opened is checked again by its file descriptor, so a link swapped in between cannot
lead out of the directories either. No directory configured: no file is read.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path

from mcp.server.mcpserver.exceptions import ToolError

from mcp_bridge.config import PLUGIN_ID

HOW_TO_ALLOW = (f"set audio.allowedDirs in the bridge's configuration (OpenClaw: plugins.entries.{PLUGIN_ID}."
                "config.audio.allowedDirs) to the directories it may read audio from, or send the audio as "
                "audio_base64")


def _inside(real: Path, roots: list[Path]) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots)


def _opened_path(fd: int) -> Path | None:
    """Where an open file really is (Linux's /proc), None where that cannot be asked."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _check_opened(fd: int, path: str, roots: list[Path], refused: ToolError, max_bytes: int) -> None:
    """What was opened is a regular file inside the allowed directories, within the size limit."""
    opened = _opened_path(fd)
    if opened is not None and not _inside(opened, roots):
        raise refused
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"path: {path!r} is not a regular file")
    if info.st_size > max_bytes:
        raise ToolError(f"path: the file is {info.st_size} bytes, over this bridge's limit of {max_bytes} "
                        "bytes (audio.maxMB); split or compress the recording")


def _read(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit and (chunk := os.read(fd, min(1 << 20, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_audio_file(path: str, allowed_dirs: list[str], max_bytes: int) -> bytes:
    """The bytes of `path`, or a ToolError naming `path` and what to do."""
    if not allowed_dirs:
        raise ToolError(f"path: this bridge reads no files: {HOW_TO_ALLOW}")
    given = Path(path).expanduser()
    if not given.is_absolute():
        raise ToolError(f"path: {path!r} is not an absolute path; give the file's full path")
    roots = [Path(os.path.realpath(Path(d).expanduser())) for d in allowed_dirs]
    real = Path(os.path.realpath(given))
    refused = ToolError(f"path: {path!r} is outside the directories this bridge may read audio from "
                        f"({', '.join(map(str, roots))}); move the file there, or {HOW_TO_ALLOW.split(', or ')[0]}")
    if not _inside(real, roots):
        raise refused
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ToolError(f"path: {path!r} does not exist") from None
    except OSError as exc:
        raise ToolError(f"path: {path!r} cannot be read ({exc.strerror or exc})") from None
    try:
        _check_opened(fd, path, roots, refused, max_bytes)
        data = _read(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ToolError(f"path: the file is over this bridge's limit of {max_bytes} bytes (audio.maxMB)")
    if not data:
        raise ToolError(f"path: {path!r} is empty")
    return data


def write_audio_file(directory: str, data: bytes, extension: str) -> str:
    """`data` as a new file `speech-<time>-<random>.<extension>` in `directory` (made if missing); its path."""
    folder = Path(os.path.realpath(Path(directory).expanduser()))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"speech-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.{extension}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise ToolError(f"audio.outputDir {directory!r}: cannot write there ({exc.strerror or exc}); fix the "
                        "directory or its permissions in the bridge's configuration") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return str(path)
