"""gpu_speak: text to speech on the GPU pool; the audio as an MCP audio content block (base64 and its
mimeType), what was made as structured content, and with `audio.outputDir` set, the file written there too
(its path is what an agent attaches to a chat message).

A long text is spoken in parts on several hosts at once and joined in order (mcp_bridge/client/
speech_synthesis.py). The result obeys the bridge's result limit (`limits.maxResultMB`: MCP clients on the
TypeScript SDK close a stdio connection on a message over 10 MiB): audio too large for it is only written
to `audio.outputDir`, or, without one, refused with what to do.

No `from __future__ import annotations` here: the SDK reads the tool's signature at registration.
"""

import asyncio
import base64
import math
import time
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import AudioContent, CallToolResult, ContentBlock, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from gpu_protocol.speech_synthesis import (
    CONTENT_TYPES,
    MAX_INPUT_CHARS,
    MAX_SPEED,
    MIN_SPEED,
    OPENAI_VOICES,
    ResponseFormat,
    SpeechRequest,
)
from mcp_bridge.client.speech_synthesis import FormatUnavailable
from mcp_bridge.mcp.audio_files import write_audio_file
from mcp_bridge.mcp.errors import tool_request
from mcp_bridge.mcp.tools import Model, Tools

MIB = 1024 * 1024
EXTENSIONS = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}
"""The file name extension of each format (opus: Ogg/Opus, which players know as .opus)."""


class SpeakOutput(BaseModel):
    format: str = Field(description="The audio's format (pcm: raw 16-bit little-endian mono at 24 kHz).")
    mime_type: str
    voice: str
    model: str | None = Field(description="The voice model that spoke, where the host said.")
    duration_s: float | None = Field(description="Seconds of audio; null where the bridge passed the hosts' "
                                     "encoded audio on without seeing its samples (no PyAV on the bridge).")
    bytes: int
    parts: int = Field(description="1: one host spoke it; more: spoken in parts on several hosts, joined in order.")
    hosts: list[str] = Field(description="Hosts that spoke it.")
    path: str | None = Field(description="Where the file was written (audio.outputDir); null when not written.")
    in_result: bool = Field(description="Whether the audio is in this result as an audio content block.")
    seconds: float


def _fits(size: int, budget_mib: float) -> bool:
    return 4 * math.ceil(size / 3) <= budget_mib * MIB


def _too_large(size: int, budget_mib: float) -> ToolError:
    return ToolError(
        f"the audio is {size / MIB:.1f} MiB ({4 * math.ceil(size / 3) / MIB:.1f} MiB as base64), over this bridge's "
        f"limit of {budget_mib:g} MiB per tool result (limits.maxResultMB; MCP clients built on the TypeScript SDK "
        "close a stdio connection on a message over 10 MiB). What to do: ask for format mp3 or opus (far smaller "
        "than wav or pcm), speak a shorter text, or set audio.outputDir so the bridge writes the file and returns "
        "its path.")


def speak_summary(out: SpeakOutput, characters: int) -> str:
    length = f"{out.duration_s:.1f}s of " if out.duration_s is not None else ""
    where = f"; written to {out.path}" if out.path else ""
    held = "" if out.in_result else " (too large for the result: only the file has it)"
    return (f"Spoke {characters} characters as {length}{out.format} audio ({out.bytes} bytes) with voice "
            f"{out.voice} on {', '.join(sorted(set(out.hosts)))} in {out.seconds:.2f}s{where}{held}.")


async def speak(tools: Tools, request: SpeechRequest) -> tuple[bytes, SpeakOutput]:
    """The audio of `request` and what to say of it; written to `audio.outputDir` when set."""
    started = time.perf_counter()
    try:
        stream = await tools.gpu.speech(request)
    except FormatUnavailable as exc:
        raise ToolError(f"invalid arguments: format: {exc}") from None
    audio = await stream.whole()
    budget, directory = tools.limits.maxResultMB, tools.limits_audio.outputDir
    if directory is None and not _fits(len(audio), budget):
        raise _too_large(len(audio), budget)
    fmt = request.response_format
    path = await asyncio.to_thread(write_audio_file, directory, audio, EXTENSIONS[fmt]) if directory else None
    duration = stream.duration_s
    return audio, SpeakOutput(
        format=fmt, mime_type=CONTENT_TYPES[fmt], voice=request.voice, model=stream.model,
        duration_s=round(duration, 3) if duration is not None else None, bytes=len(audio),
        parts=len(stream.plan.parts), hosts=stream.hosts, path=path, in_result=_fits(len(audio), budget),
        seconds=round(time.perf_counter() - started, 3))


def register(server: MCPServer, tools: Tools) -> None:
    directory = tools.limits_audio.outputDir
    written = (f"also writes the file to {directory} and returns its path" if directory
               else "writes no file (audio.outputDir is not set)")

    @server.tool(
        title="Speak text on a GPU",
        description="Text to speech on the GPU pool: voice replies, voice notes, read-aloud. Returns the audio as "
        "an audio content block (base64 with its mimeType) and its duration, format, voice and hosts as structured "
        f"content; this bridge {written}. Formats: mp3 (default), opus (voice notes), aac, flac, wav, pcm (raw "
        f"16-bit mono at 24 kHz). Up to {MAX_INPUT_CHARS} characters; a long text is spoken in parts on several "
        "hosts at once. Cost: about a tenth of the audio's length on a CPU host, far less on a GPU.",
        annotations=ToolAnnotations(read_only_hint=directory is None, destructive_hint=False,
                                    idempotent_hint=directory is None, open_world_hint=True),
    )
    async def gpu_speak(
        text: Annotated[str, Field(min_length=1, max_length=MAX_INPUT_CHARS, description="The text to speak.")],
        voice: Annotated[str, Field(min_length=1, max_length=200, description=f"OpenAI's voice names ({', '.join(OPENAI_VOICES)}) are the host's default voice; or a voice a host lists (gpu_info).")] = "alloy",
        format: Annotated[ResponseFormat, Field(description="The audio's format.")] = "mp3",
        speed: Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED, description="1 is normal speed.")] = 1.0,
        model: Model = None,
    ) -> Annotated[CallToolResult, SpeakOutput]:
        request = tool_request(SpeechRequest, tools.limits, model=model, input=text, voice=voice,
                               response_format=format, speed=speed)
        audio, out = await tools.guarded(speak(tools, request))
        content: list[ContentBlock] = [TextContent(type="text", text=speak_summary(out, len(text)))]
        if out.in_result:
            content.append(AudioContent(type="audio", data=base64.b64encode(audio).decode("ascii"),
                                        mime_type=out.mime_type))
        return CallToolResult(content=content, structured_content=out.model_dump(mode="json"))
