"""One speech request, from text to audio: the voice, the sentences, the batches, the encoding, a job.

`Speak` is the speak task's service, built once by the service's state. A request's sentences
(`split_sentences`) are phonemized by espeak-ng, together with the sentences of other requests that arrive
meanwhile (`phoneme_batches.py`), synthesized on the
model's scheduler (where the sentences of concurrent requests share model calls: `PiperEngine.run`) and
encoded on a worker thread, one sentence at a time: `chunks` yields each sentence's encoded piece as it is
ready, so the first audio goes out after the first sentence. The next sentences are already on their way
meanwhile (`LOOKAHEAD`, at least one per engine worker), so a long text keeps every core busy.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from gpu_protocol.priority import speak_by_size
from gpu_protocol.speech_synthesis import OPENAI_VOICES, SpeechRequest, split_sentences
from gpu_service.errors import ModelNotFound, Unprocessable
from gpu_service.http.serve import Stream
from gpu_service.models.registry import LoadedModel, ModelKey
from gpu_service.runtime.state import ServiceState
from gpu_service.scheduling.jobs import Job
from gpu_service.scheduling.lanes import lane_for
from gpu_service.tasks.speak.encode import AudioEncoder
from gpu_service.tasks.speak.engine import PiperEngine
from gpu_service.tasks.speak.phoneme_batches import PhonemeBatches

LOOKAHEAD = 2
"""Sentences of one request in flight at least (more when the engine runs more calls at once)."""

Disconnected = Callable[[], Awaitable[bool]]
"""Whether the client has gone (Starlette's `request.is_disconnected`)."""


@dataclass(frozen=True)
class Voice:
    """A request's voice, checked against its model."""

    key: ModelKey
    speaker: int
    voices: tuple[str, ...]
    """What the model speaks (its own voices, then OpenAI's names, which mean its first)."""

    @classmethod
    def of(cls, key: ModelKey, engine: PiperEngine, speaker: int = 0) -> Voice:
        return cls(key, speaker, tuple([*engine.voices, *OPENAI_VOICES]))


def speaker_of(engine: PiperEngine, voice: str, mapped: Mapping[str, str] | None = None) -> int:
    """The speaker id `voice` names: one of the voice's own, an OpenAI name the operator mapped to one of its
    speakers (`mapped`, GPU_SPEAK_VOICES), or another OpenAI name (its first speaker); `Unprocessable` naming
    the voices there are."""
    own = engine.config.speakers
    if voice in own:
        return own[voice]
    if (target := (mapped or {}).get(voice)) in own:
        return own[target]
    if voice in engine.voices or voice in OPENAI_VOICES:
        return 0
    raise Unprocessable(f"voice {voice!r} is not a voice of model {engine.name!r}; voices: "
                        f"{', '.join([*engine.voices, *OPENAI_VOICES])}", param="voice")


def mapped_model(engine: PiperEngine, voice: str, mapped: Mapping[str, str]) -> str | None:
    """The other voice model the operator mapped the OpenAI name `voice` to (GPU_SPEAK_VOICES), when its
    target is neither a speaker of `engine` nor `engine` itself; None otherwise."""
    target = mapped.get(voice)
    if target is None or target in engine.config.speakers or target in (engine.name, *engine.voices):
        return None
    return target


def speech_job(body: SpeechRequest, voice: Voice, sentences: int) -> Job:
    """A speech request's job, in the lane its caller asked for, else by its length (a reply is interactive)."""
    return Job("speak", voice.key.label, sentences, lane=lane_for(speak_by_size(characters=len(body.input))))


class Speak:
    """What the speech-synthesis routes call, on top of the service's state."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._phonemes: weakref.WeakKeyDictionary[PiperEngine, PhonemeBatches] = weakref.WeakKeyDictionary()
        """Each loaded voice's espeak-ng calls (a reloaded voice gets new ones)."""

    def _phonemes_of(self, engine: PiperEngine) -> PhonemeBatches:
        if engine not in self._phonemes:
            self._phonemes[engine] = PhonemeBatches(engine.phonemizer.phonemes, calls=engine.concurrency)
        return self._phonemes[engine]

    def model_name(self, requested: str | None) -> str:
        if requested is not None:  # tts-1 and the other OpenAI names arrive as None (SpeechRequest)
            return requested
        default: str | None = self.state.settings.default_models.get("speak")
        if default is None:
            raise ModelNotFound("no speech-synthesis voice is configured on this host: set MODEL_SPEAK "
                                "(a Piper voice such as en_US-joe-medium, or a voice's .onnx path) or name a `model`")
        return default

    async def voice(self, body: SpeechRequest) -> Voice:
        """The request's model (loaded) and speaker; 404/422 before any audio goes out. An OpenAI voice name
        the operator mapped to another voice model (GPU_SPEAK_VOICES) speaks with that model when the request
        names none (`tts-1`); a request that names its model speaks with that one."""
        mapped = self.state.settings.speak_voices
        key = self.state.registry.key("speak", self.model_name(body.model))
        async with self.state.registry.use(key) as loaded:
            engine = loaded.engine_as(PiperEngine)
            other = mapped_model(engine, body.voice, mapped) if body.model is None else None
            if other is None:
                return Voice.of(key, engine, speaker_of(engine, body.voice, mapped))
        return await self.voices(other)

    async def voices(self, requested: str | None) -> Voice:
        key = self.state.registry.key("speak", self.model_name(requested))
        async with self.state.registry.use(key) as loaded:
            engine = loaded.engine_as(PiperEngine)
            return Voice.of(key, engine)

    async def _speak(self, loaded: LoadedModel, sentence: str, body: SpeechRequest, speaker: int, job: Job,
                     deadline: float) -> np.ndarray:
        engine = loaded.engine_as(PiperEngine)
        utterance = engine.utterance(await self._phonemes_of(engine).phonemes(sentence), body.speed, speaker)
        cost = min(max(1, loaded.scheduler.max_batch_tokens), max(1, len(utterance.ids)))
        (audio,) = await loaded.scheduler.submit([utterance], [cost], job=job, deadline=deadline)
        return audio

    async def stream(self, body: SpeechRequest, voice: Voice, gone: Disconnected) -> Stream:
        """The request as a stream of encoded pieces (`chunks`), one job in `/status`, its class decided here
        (by its length, unless the caller asked: call it where the caller's lane is set)."""
        sentences = split_sentences(body.input)
        job = speech_job(body, voice, len(sentences))
        return Stream(self.chunks(body, voice, sentences, job, gone), job.timing)

    async def chunks(self, body: SpeechRequest, voice: Voice, sentences: list[str], job: Job,
                     gone: Disconnected) -> AsyncGenerator[bytes, None]:
        """The file's encoded pieces, one sentence at a time (the first after the first sentence), the next
        ones on their way meanwhile; stops when the client has gone."""
        deadline = time.monotonic() + self.state.settings.request_timeout_s
        self.state.jobs.track(job)
        ahead: collections.deque[asyncio.Task[np.ndarray]] = collections.deque()
        try:
            async with self.state.registry.use(voice.key) as loaded:
                engine = loaded.engine_as(PiperEngine)
                encoder = AudioEncoder(body.response_format, engine.sample_rate)
                waiting = collections.deque(sentences)
                while waiting or ahead:
                    while waiting and len(ahead) < max(LOOKAHEAD, engine.concurrency):
                        task = asyncio.create_task(
                            self._speak(loaded, waiting.popleft(), body, voice.speaker, job, deadline))
                        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # read, even if dropped
                        ahead.append(task)
                    if await gone():
                        return
                    audio = await ahead.popleft()
                    if data := await asyncio.to_thread(encoder.encode, audio):
                        yield data
                if tail := await asyncio.to_thread(encoder.finish):
                    yield tail
        finally:
            for task in ahead:  # the client left or the stream failed: unstarted sentences are dropped
                task.cancel()
            self.state.jobs.finish(job)
