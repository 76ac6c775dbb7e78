"""One transcription, from file bytes to segments: limits, decoding, the model, the batches, a job.

`Speech` is the transcribe task's service, built once by the service's state with its `SpeechLimits`
(settings.py); `close` stops the decoder processes (the lifespan calls it on the way out).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter

from gpu_protocol.audio import RATE
from gpu_protocol.priority import audio_by_size
from gpu_protocol.transcribe import TranscriptionOptions
from gpu_service.errors import ModelNotFound, Unprocessable
from gpu_service.models.registry import LoadedModel
from gpu_service.runtime.result import Result
from gpu_service.runtime.state import ServiceState
from gpu_service.scheduling.jobs import Job, Timing
from gpu_service.scheduling.lanes import deadline_for, lane_for
from gpu_service.settings import SpeechLimits
from gpu_service.tasks.transcribe.decode import Decoders
from gpu_service.tasks.transcribe.engine import DecodeOptions, SpeechEngine, segments


@dataclass
class Transcript:
    text: str
    language: str
    duration: float
    segments: list[Any]
    """faster-whisper Segments, times on the file's clock."""
    task: str


def _language(code: str | None) -> str | None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if code is None:
        return None
    if code.lower() not in _LANGUAGE_CODES:
        raise Unprocessable(f"language {code!r} is not a language Whisper knows; send an ISO-639-1 code "
                            "such as en, de, fr, es, ja (or leave it out to detect it)")
    return code.lower()


class Speech:
    """What the speech routes share: limits and the audio counter, on top of the service's state."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.decoders = Decoders()
        """Its decoder processes, started when first needed; `close` stops them."""
        self.limits: SpeechLimits = self.state.settings.speech
        self.audio_seconds = Counter("gpu_service_audio_seconds", "Seconds of audio transcribed", ["model"],
                                     registry=self.state.metrics.registry)

    def close(self) -> None:
        """Stop the decoder processes (the service's shutdown); a later file starts new ones."""
        self.decoders.close()

    def model_name(self, requested: str | None) -> str:
        if requested is not None:  # whisper-1 arrives as None (TranscriptionOptions)
            return requested
        default: str | None = self.state.settings.default_models.get("transcribe")
        if default is None:
            raise ModelNotFound("no speech-to-text model is configured on this host: set MODEL_TRANSCRIBE "
                                "(a faster-whisper name such as tiny.en, or a directory) or name a `model`")
        return default

    async def transcribe(self, data: bytes, filename: str, options: TranscriptionOptions,
                         task: str) -> Result[Transcript]:
        state = self.state
        language = _language(options.language)
        key = state.registry.key("transcribe", self.model_name(options.model))
        started = time.monotonic()
        deadline = deadline_for(state.settings.request_timeout_s)
        samples = await self.decoders.decode(data, filename=filename, max_seconds=self.limits.max_audio_seconds,
                                             timeout_s=self.limits.decode_timeout_s)
        duration = samples.shape[0] / RATE
        job = state.jobs.start("transcribe", key.label, max(1, math.ceil(duration)))
        # `job` counts seconds of audio for /status; `batches` (untracked) times its chunks' batches: queue time.
        batches = Job("transcribe", key.label, 0)
        try:
            async with state.registry.use(key) as loaded:
                result = await self._run(loaded, samples, language, options, task, (job, batches), deadline)
        finally:
            state.jobs.finish(job)
        self.audio_seconds.labels(key.label).inc(duration)
        queued = batches.timing().queue_s
        return Result(result, model=key.label, timing=Timing(queue_s=queued,
                                                             inference_s=time.monotonic() - started - queued))

    async def _run(self, loaded: LoadedModel, samples: np.ndarray, language: str | None,
                   options: TranscriptionOptions, task: str, jobs: tuple[Job, Job], deadline: float) -> Transcript:
        job, batches = jobs
        engine = loaded.engine_as(SpeechEngine)
        if not engine.multilingual:
            if task == "translate":
                raise Unprocessable(f"model {loaded.key.label!r} is English-only and cannot translate; "
                                    "name a multilingual Whisper model (e.g. small, large-v3)")
            if language not in (None, "en"):
                raise Unprocessable(f"model {loaded.key.label!r} is English-only; language {language!r} needs a "
                                    "multilingual Whisper model (e.g. small, large-v3)")
        if language is None:
            language = await loaded.scheduler.call(engine.detect_language, samples)
        decoding = DecodeOptions(language=language, task=task, prompt=options.prompt,
                                 temperature=options.temperature,
                                 word_timestamps="word" in options.timestamp_granularities)
        # Its class is known from the decoded length already, so its preparation (voice detection, features:
        # seconds for an hour's recording) waits in it too: a voice note never waits behind a long file's.
        lane = lane_for(audio_by_size(seconds=samples.shape[0] / RATE))
        prepared = await loaded.prepare(engine.prepare, samples, decoding, job, lane=lane)
        outputs: list[Any] = []
        if prepared.chunks:
            # Each chunk costs an equal share of the batcher's budget: `batch_chunks` fill a batch.
            cost = max(1, loaded.scheduler.max_batch_tokens // engine.batch_chunks)
            outputs = await loaded.scheduler.submit(prepared.chunks, [cost] * len(prepared.chunks), job=batches,
                                                    deadline=deadline,
                                                    lane=lane)
        found = segments(prepared, outputs, options.temperature)
        text = " ".join(s.text.strip() for s in found if s.text.strip())
        return Transcript(text=text, language=language, duration=round(prepared.duration, 3), segments=found,
                          task=task)
