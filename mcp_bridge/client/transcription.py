"""Speech to text over the pool: a short recording goes to one host whole; a long one is cut at silences
and its parts are transcribed on several hosts at once, then merged on the recording's clock.

Splitting needs the recording's samples, so only a recording that may be long is decoded (in a child
process, `audio_decode`), and only when more than one host transcribes (with one, the host's own VAD
does the same work without the round trip). Each part is an ordinary pool request through the shard
runner: a host that fails mid-way has its part redone on another, and the parts come back in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence

from gpu_protocol.priority import audio_by_size, estimate_audio_seconds
from gpu_protocol.transcribe import (
    TranscriptionOptions,
    TranscriptionSegment,
    TranscriptionWord,
    VerboseTranscription,
)
from mcp_bridge.client.audio_decode import RATE, can_decode, decode
from mcp_bridge.client.audio_length import wav_seconds
from mcp_bridge.client.audio_split import Part, part_count, split_audio
from mcp_bridge.client.results import TranscribeOutcome
from mcp_bridge.client.shard_runner import ShardRunner
from mcp_bridge.client.sharding import Progress
from mcp_bridge.config import BridgeConfig
from mcp_bridge.pool.call_class import classed
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.probes import read_info
from mcp_bridge.pool.routing import Need
from mcp_bridge.protocols.exchange import TRANSCRIBE
from mcp_bridge.protocols.speech import AudioRequest

log = logging.getLogger(__name__)

MIN_BYTES_PER_SECOND = 750
"""The lowest bitrate a voice codec uses (Opus at 6 kbit/s): a file smaller than this many bytes per
second of `audio.splitAboveSeconds` cannot be longer, so it is sent whole without being opened."""


class Transcriber:
    def __init__(self, config: BridgeConfig, pool: HostPool, shards: ShardRunner) -> None:
        self.config, self.pool, self.shards = config, pool, shards
        self._warned = False

    async def transcribe(self, request: AudioRequest, *, deadline: float, host: str | None = None,
                         progress: Progress | None = None) -> TranscribeOutcome:
        started = time.perf_counter()
        await self._describe_unheard()
        parts = await self._parts(request) if host is None else None
        known = (sum(p.seconds for p in parts) if parts else request.seconds) or wav_seconds(request.audio)
        # Unknown (a compressed file not decoded): its bytes only guess, for the bridge's own slots; the host
        # decides its class from the decoded length unless the caller chose one.
        seconds = known if known is not None else estimate_audio_seconds(len(request.audio))
        with classed(audio_by_size(seconds=seconds), sized=known is not None):
            if not parts:
                answer, chosen = await self._ask(request, deadline, host)
                return TranscribeOutcome(answer, [chosen], 1, time.perf_counter() - started)
            return await self._sharded(request, parts, deadline, progress, started)

    async def _sharded(self, request: AudioRequest, parts: list[Part], deadline: float, progress: Progress | None,
                       started: float) -> TranscribeOutcome:
        used: set[str] = set()

        async def run_part(
            shard: Sequence[Part], index: int, prefer: str | None
        ) -> tuple[list[VerboseTranscription], str]:
            part = shard[0]
            sub = AudioRequest(part.wav, f"part-{index}.wav", request.options, request.task, part.seconds)
            answer, chosen = await self._ask(sub, deadline, None, prefer)
            used.add(chosen)
            return [answer], chosen

        need = Need("transcribe", request.options.model)
        answers = await self.shards.run(need, parts, run_part, kind=request.task, progress=progress, shard_size=1)
        merged = merge([(p.offset, a[0]) for p, a in zip(parts, answers, strict=True)],
                       sum(p.seconds for p in parts), request.options)
        return TranscribeOutcome(merged, sorted(used), len(parts), time.perf_counter() - started)

    async def _ask(self, request: AudioRequest, deadline: float, host: str | None,
                   prefer: str | None = None) -> tuple[VerboseTranscription, str]:
        answer, chosen = await self.pool.send(TRANSCRIBE, request, deadline=deadline, pin=host, prefer=prefer)
        return answer, chosen.name

    async def _describe_unheard(self) -> None:
        """Read /info of versioned hosts not heard from yet (a bridge just started): a 0.3.0 service has no
        speech, and until its version is known a host is taken for the oldest, so it would be passed over."""
        unheard = [h for h in self.pool.hosts
                   if h.can_serve("transcribe") and h.protocol.versioned and h.described.version is None]
        if unheard:
            timeout = self.config.healthCheckTimeoutSeconds
            await asyncio.gather(*(read_info(h, timeout) for h in unheard), return_exceptions=True)

    async def _parts(self, request: AudioRequest) -> list[Part] | None:
        """The recording's parts when it is worth splitting (long, several hosts, PyAV installed), else None."""
        above = self.config.audio.splitAboveSeconds
        hosts = [h for h in self.pool.hosts if h.can_serve("transcribe") and h.usable(self.pool.clock())]
        if above <= 0 or len(hosts) < 2 or len(request.audio) < above * MIN_BYTES_PER_SECOND:
            return None
        if not can_decode():
            if not self._warned:
                self._warned = True
                log.warning("long recordings are sent whole: install the bridge's speech extra (PyAV) to split "
                            "them over the pool")
            return None
        decoded = await decode(request.audio, above)
        if decoded.pcm is None:
            return None
        parts = split_audio(decoded.pcm, part_count(len(decoded.pcm) / RATE, len(hosts)))
        return parts if len(parts) > 1 else None


def merge(parts: Sequence[tuple[float, VerboseTranscription]], duration: float,
          options: TranscriptionOptions) -> VerboseTranscription:
    """The parts' transcripts (each with its offset in the recording) as one: times moved onto the
    recording's clock, segments numbered again, texts joined."""
    segments: list[TranscriptionSegment] = []
    words: list[TranscriptionWord] = []
    for offset, part in parts:
        for s in part.segments:
            segments.append(s.model_copy(update={
                "id": len(segments), "start": round(s.start + offset, 3), "end": round(s.end + offset, 3),
                "seek": s.seek + round(offset * 100),
            }))
        words.extend(w.model_copy(update={"start": round(w.start + offset, 3), "end": round(w.end + offset, 3)})
                     for w in part.words or [])
    spoken = [part for _, part in parts if part.text.strip()]
    languages = Counter(part.language for part in spoken or [p for _, p in parts])
    first = parts[0][1]
    return VerboseTranscription(
        task=first.task, language=languages.most_common(1)[0][0], duration=round(duration, 3),
        text=" ".join(part.text.strip() for part in spoken), model=first.model, segments=segments,
        words=words if "word" in options.timestamp_granularities else None,
    )
