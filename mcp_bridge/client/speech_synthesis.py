"""Text to speech over the pool: a long input is cut at sentence ends into parts, the parts are spoken on
several hosts at once (each part one pool request: a host that fails or is killed mid-way has its part
redone on another, within the call's deadline) and the audio is joined in order, going out as the parts
finish in order: the first audio follows the first part, a single sentence.

How the parts become one file (`plan`): the hosts are asked for raw `pcm` (s16le mono at 24 kHz) and the
bridge encodes the joined audio once (`audio_encode.PcmEncoder`: one RIFF header for a long WAV, one
container for the rest), for wav and pcm always, for mp3, opus, aac and flac when PyAV (the bridge's
`speech` extra) is installed. Without PyAV, an input of one part is spoken by one host in the format asked
and passed on as it is, and the mp3 parts of a longer one are passed on one after another (MPEG audio
frames stand alone, so joined files play as one); opus, aac and flac of more than one part are refused
(`FormatUnavailable`), naming what this bridge can make.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from gpu_protocol.priority import speak_by_size
from gpu_protocol.speech_synthesis import OPENAI_VOICES, PCM_RATE, SpeechRequest, split_sentences
from mcp_bridge.client.audio_encode import RAW_FORMATS, PcmEncoder, can_encode, encode_whole
from mcp_bridge.config import BridgeConfig
from mcp_bridge.pool.call_class import CallClass, current_class, decide
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.probes import describe_unheard
from mcp_bridge.pool.routing import Need, candidates
from mcp_bridge.protocols.exchange import SPEAK
from mcp_bridge.protocols.speech_synthesis import SpokenAudio

PART_CHARS = 300
"""A part after the first holds whole sentences up to this many characters (about 20 s of speech): enough
parts for every host of a pool to take some of a long input, few enough that each is worth a request."""
JOINABLE_WITHOUT_ENCODER = ("mp3",)
"""Formats whose files, joined end to end, play as one (MPEG audio frames stand alone)."""
WINDOW_MAX = 16


class FormatUnavailable(ValueError):
    """The bridge cannot make the asked format for an input this long (no PyAV); names what it can."""


def with_voice_model(request: SpeechRequest, hosts: list[Host]) -> SpeechRequest:
    """`request` naming the model that speaks its voice, where it names no model and its voice is one a host
    lists (the name of the host's default or loaded voice model, or a speaker of one: what `GET
    /v1/audio/voices` shows): then only hosts with that model get it, never a host that would refuse the voice.
    OpenAI's names and voices no host lists go as they are (each host answers them itself)."""
    if request.model is not None or request.voice in OPENAI_VOICES:
        return request
    for host in hosts:
        speak = (host.described.capabilities or {}).get("speak")
        if speak is not None and (model := speak.voice_model(request.voice)) is not None:
            return request.model_copy(update={"model": model})
    return request


def split_parts(text: str) -> list[str]:
    """`text` in parts, in order: its first sentence alone (the first audio comes soon), then its sentences
    packed into parts of at most `PART_CHARS` characters (a longer sentence is cut at commas, then words)."""
    sentences = split_sentences(text, PART_CHARS)
    parts = sentences[:1]
    for sentence in sentences[1:]:
        if len(parts) > 1 and len(parts[-1]) + 1 + len(sentence) <= PART_CHARS:
            parts[-1] += " " + sentence
        else:
            parts.append(sentence)
    return parts


@dataclass(frozen=True)
class SpeechPlan:
    """What the hosts are asked for, and how the bridge makes the caller's file of their answers."""

    parts: list[str]
    response_format: str
    """What the caller gets."""
    host_format: str
    """What each host is asked for: `pcm` when the bridge encodes, else `response_format` (passed on)."""

    @property
    def encodes(self) -> bool:
        return self.host_format == "pcm"


def plan(request: SpeechRequest) -> SpeechPlan:
    """How `request` is spoken (module docstring); FormatUnavailable when this bridge cannot make its format."""
    parts, asked = split_parts(request.input), request.response_format
    if can_encode(asked):
        return SpeechPlan(parts, asked, "pcm")
    if len(parts) == 1 or asked in JOINABLE_WITHOUT_ENCODER:
        return SpeechPlan(parts, asked, asked)
    can = ", ".join([*RAW_FORMATS, *JOINABLE_WITHOUT_ENCODER])
    raise FormatUnavailable(
        f"response_format {asked!r} for an input of {len(parts)} parts needs PyAV on the bridge (pip install "
        f"'openclaw-gpu-bridge[speech]'); without it this bridge makes {can} of any length, and {asked} of an "
        f"input of one sentence (up to {PART_CHARS} characters)")


@dataclass
class SpeechStream:
    """One request's audio as it is made: its parts spoken on the pool, `window` at a time, read in order.
    Closing `chunks` early (the client left) cancels the parts still running: the pool tells their hosts."""

    pool: HostPool
    request: SpeechRequest
    plan: SpeechPlan
    part_timeout: float
    """Each part's deadline, from when it is sent (the bridge's `timeout`): a long input takes longer."""
    window: int
    call_class: CallClass | None = None
    """The call's class and tenant (a short reply interactive, a chapter batch), held by every part."""
    hosts: list[str] = field(default_factory=list)
    """The host that spoke each part, in part order (so far)."""
    model: str | None = None
    pcm_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def duration_s(self) -> float | None:
        """Seconds of audio so far; None when the hosts' encoded audio was passed on (not seen as samples)."""
        return self.pcm_bytes / 2 / PCM_RATE if self.plan.encodes else None

    async def parts(self) -> AsyncGenerator[SpokenAudio, None]:
        """Each part's audio, in order, as soon as it and every part before it are spoken."""
        slots = asyncio.Semaphore(self.window)

        async def speak(text: str) -> tuple[SpokenAudio, str]:
            current_class.set(self.call_class)  # this part's own task: its context only
            sub = self.request.model_copy(update={"input": text, "response_format": self.plan.host_format,
                                                  "stream_format": "audio"})
            async with slots:
                deadline = self.pool.clock() + self.part_timeout
                spoken, host = await self.pool.send(SPEAK, sub, deadline=deadline)
            return spoken, host.name

        tasks = [asyncio.ensure_future(speak(text)) for text in self.plan.parts]
        try:
            for task in tasks:
                spoken, host = await task
                self.hosts.append(host)
                self.model = self.model or spoken.model
                self.pcm_bytes += len(spoken.audio) if self.plan.encodes else 0
                yield spoken
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The caller's file, piece by piece: one piece per part (encoded on a worker thread), then its end."""
        encoder = PcmEncoder(self.plan.response_format) if self.plan.encodes else None
        parts = self.parts()
        try:
            async for spoken in parts:
                data = await asyncio.to_thread(encoder.encode, spoken.audio) if encoder else spoken.audio
                if data:
                    yield data
            if encoder is not None and (tail := await asyncio.to_thread(encoder.finish)):
                yield tail
        finally:
            await parts.aclose()

    async def whole(self) -> bytes:
        """The whole file (a WAV's header carries its real length)."""
        spoken = [s.audio async for s in self.parts()]
        if not self.plan.encodes:
            return b"".join(spoken)
        return await asyncio.to_thread(encode_whole, spoken, self.plan.response_format)


class Speaker:
    def __init__(self, config: BridgeConfig, pool: HostPool) -> None:
        self.config, self.pool = config, pool

    async def stream(self, request: SpeechRequest) -> SpeechStream:
        """`request`'s audio, to be read from the stream (nothing is sent before it is read);
        FormatUnavailable when this bridge cannot make its format."""
        speech_plan = plan(request)
        usable = [h for h in self.pool.hosts if h.usable(self.pool.clock())]
        await describe_unheard(usable, "speak", self.config.healthCheckTimeoutSeconds)
        request = with_voice_model(request, usable)
        able = candidates(self.pool.hosts, Need("speak", request.model))
        window = min(WINDOW_MAX, max(2, sum(h.max_concurrent or 2 for h in able)))
        call_class = decide(speak_by_size(characters=len(request.input)))
        return SpeechStream(self.pool, request, speech_plan, self.config.timeout, window, call_class)
