"""gpu_transcribe: speech to text on the GPU pool; the transcript as text, its timed segments as structured content.

The audio comes as a local file (`path`, only under `audio.allowedDirs`: mcp_bridge.mcp.audio_files) or
as base64 (`audio_base64`, for remote clients); never from a URL (the bridge would fetch whatever an
agent named, from wherever it runs). A host's refusal of the audio names the argument that carried it.

No `from __future__ import annotations` here: the SDK reads the tool's signature at registration,
and its types are built from the bridge's limits.
"""

import asyncio
import base64
import binascii
import math
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from gpu_protocol.transcribe import TranscriptionOptions
from mcp_bridge.client.audio_decode import AudioUnreadable
from mcp_bridge.client.results import TranscribeOutcome
from mcp_bridge.mcp.audio_files import read_audio_file
from mcp_bridge.mcp.errors import tool_request
from mcp_bridge.mcp.tools import READ_ONLY, HostName, Model, Tools, progress_reporter
from mcp_bridge.pool.errors import HostRejected
from mcp_bridge.protocols.speech import AudioRequest

MIB = 1024 * 1024
AUDIO_FORMATS = "ogg/opus, mp3, m4a, wav, flac, webm"


class Segment(BaseModel):
    start: float = Field(description="Seconds from the start of the recording.")
    end: float
    text: str


class Word(BaseModel):
    word: str
    start: float
    end: float


class TranscribeOutput(BaseModel):
    text: str = Field(description="The whole transcript (also the text content).")
    language: str = Field(description="The spoken language (ISO-639-1), detected unless given.")
    duration: float = Field(description="Seconds of audio.")
    segments: list[Segment] = Field(description="The transcript in timed pieces, on the recording's clock.")
    words: list[Word] | None = Field(default=None, description="Per word, when word_timestamps was asked.")
    model: str | None
    hosts: list[str] = Field(description="Hosts that transcribed it.")
    parts: int = Field(description="1: sent whole; more: cut at silences and transcribed on several hosts at once.")
    seconds: float


def transcribe_output(outcome: TranscribeOutcome) -> tuple[str, TranscribeOutput]:
    t = outcome.transcription
    out = TranscribeOutput(
        text=t.text.strip(), language=t.language, duration=t.duration, model=t.model, hosts=outcome.hosts,
        parts=outcome.parts, seconds=round(outcome.seconds, 3),
        segments=[Segment(start=s.start, end=s.end, text=s.text.strip()) for s in t.segments],
        words=[Word(word=w.word, start=w.start, end=w.end) for w in t.words] if t.words is not None else None,
    )
    return out.text or f"(no speech found in {t.duration:.1f}s of audio)", out


def _audio(tools: Tools, path: str | None, audio_base64: str | None) -> tuple[str, bytes]:
    """Which argument carried the audio, and its bytes."""
    if (path is None) == (audio_base64 is None):
        raise ToolError("give exactly one of path (a local audio file) or audio_base64 (the file's bytes)")
    max_bytes = int(tools.limits_audio.maxMB * MIB)
    if path is not None:
        return "path", read_audio_file(path, tools.limits_audio.allowedDirs, max_bytes)
    try:
        data = base64.b64decode(audio_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise ToolError("audio_base64: not valid base64 (standard alphabet, with padding)") from None
    if not data:
        raise ToolError("audio_base64: empty; send the audio file's bytes")
    if len(data) > max_bytes:
        raise ToolError(f"audio_base64: {len(data)} bytes, over this bridge's limit of {max_bytes} (audio.maxMB)")
    return "audio_base64", data


async def _transcribe(tools: Tools, ctx: Context, argument: str, request: AudioRequest,
                      host: str | None) -> TranscribeOutcome:
    """The pool's transcript; the host's refusal of the audio (or the bridge's decoder's) names `argument`."""
    try:
        return await tools.gpu.transcribe(request, host=host, progress=progress_reporter(ctx))
    except AudioUnreadable as exc:
        raise ToolError(f"{argument}: {exc}; send an audio file ({AUDIO_FORMATS})") from None
    except HostRejected as exc:
        if exc.status in (400, 415, 422):
            raise ToolError(f"{argument}: host {exc.host!r} could not transcribe it: {exc.detail}. What to do: "
                            f"send an audio file ({AUDIO_FORMATS}) and valid options") from None
        if exc.status == 413:
            raise ToolError(f"{argument}: too large for host {exc.host!r}: {exc.detail}") from None
        raise


def register(server: MCPServer, tools: Tools) -> None:
    audio = tools.limits_audio
    base64_chars = 4 * math.ceil(audio.maxMB * MIB / 3)
    where = (f"files under {', '.join(audio.allowedDirs)}" if audio.allowedDirs
             else "no files (audio.allowedDirs is not set: use audio_base64)")

    @server.tool(
        title="Transcribe speech on a GPU",
        description="Speech to text (Whisper) on the GPU pool: voice notes, meeting recordings, dictation. Returns "
        "the transcript as text, and its timed segments, language and duration as structured content. Give the "
        f"audio as `path` (this bridge reads {where}) or as `audio_base64`; formats: {AUDIO_FORMATS}; up to "
        f"{audio.maxMB:g} MiB. Long recordings are cut at silences and transcribed on several hosts at once. "
        "translate=true gives English text from any language. Cost: about the audio's length / 50 on a GPU.",
        annotations=READ_ONLY,
    )
    async def gpu_transcribe(
        ctx: Context,
        path: Annotated[str | None, Field(max_length=4096, description="Absolute path of a local audio file (only under the bridge's audio.allowedDirs).")] = None,
        audio_base64: Annotated[str | None, Field(max_length=base64_chars, description=f"The audio file's bytes, base64; at most {audio.maxMB:g} MiB of audio.")] = None,
        filename: Annotated[str | None, Field(max_length=255, description="The file's name with audio_base64 (its extension hints the format).")] = None,
        language: Annotated[str | None, Field(min_length=2, max_length=16, description="Spoken language (ISO-639-1, e.g. en); detected when omitted.")] = None,
        prompt: Annotated[str | None, Field(max_length=2000, description="Words or names to expect (spelling hints).")] = None,
        translate: Annotated[bool, Field(description="Translate the speech to English text.")] = False,
        word_timestamps: Annotated[bool, Field(description="Also give each word's time.")] = False,
        model: Model = None,
        host: HostName = None,
    ) -> Annotated[CallToolResult, TranscribeOutput]:
        options = tool_request(
            TranscriptionOptions, tools.limits, model=model, language=language, prompt=prompt, response_format="verbose_json",
            timestamp_granularities=["segment", "word"] if word_timestamps else ["segment"],
        )
        argument, data = await asyncio.to_thread(_audio, tools, path, audio_base64)
        name = filename or (path.rsplit("/", 1)[-1] if path else "audio")
        request = AudioRequest(data, name, options, "translate" if translate else "transcribe")
        outcome = await tools.guarded(_transcribe(tools, ctx, argument, request, host))
        text, out = transcribe_output(outcome)
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=out.model_dump(mode="json"))
