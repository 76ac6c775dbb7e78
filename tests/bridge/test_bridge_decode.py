"""The bridge's audio decoder child (mcp_bridge/client/audio_decode.py) under uvloop, the loop uvicorn runs the
HTTP bridge on: it decodes, it is killed at its time limit, and a cancelled call takes its child with it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mcp_bridge.client.audio_decode import AudioUnreadable, can_decode, decode
from tests.support.speech_support import FOX, encode, speak
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not can_decode(), reason="PyAV (the speech extra) is not installed")]
uvloop = pytest.importorskip("uvloop")


def decoder_children() -> list[int]:
    """Our child processes running the bridge's decoder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"mcp_bridge.client.audio_decode" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_decoder_child_under_uvloop(tmp_path: Path) -> None:
    fox = encode(speak(FOX, tmp_path / "fox.wav"), ".ogg").read_bytes()

    async def calls() -> None:
        decoded = await decode(fox, longer_than=0.0)
        assert decoded.pcm is not None and 2.0 < decoded.duration < 6.0
        with pytest.raises(AudioUnreadable, match="took over"):
            await decode(fox, longer_than=0.0, timeout=0.001)
        call = asyncio.create_task(decode(fox, longer_than=0.0, timeout=60))
        await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    uvloop.run(calls())
    wait_until(lambda: not decoder_children(), message="a decoder child outlived its call")
