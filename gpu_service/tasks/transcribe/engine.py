"""The Whisper engine: a faster-whisper model, its per-request preparation, and batches of speech
chunks from any number of requests.

A request's audio is cut by Silero VAD into chunks of at most 30 s of speech (cut at silences) and
turned into log-mel features on the model's preparation thread (`prepare`). The chunks go to the
model's `BatchScheduler` like texts do; `run` takes a batch of chunks, whichever requests they came
from, groups them by decoding options (language, task, prompt, temperature, word timestamps: what
one `generate` call must share) and runs each group as one batch through faster-whisper's batched
forward pass. `segments` puts one request's chunk results back in order on the file's own clock.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpu_protocol.audio import RATE
from gpu_service.models.engine import EngineDetails
from gpu_service.models.resolve import ResolvedModel
from gpu_service.scheduling.jobs import Job

CHUNK_SECONDS = 30
"""Whisper's window: VAD cuts speech into chunks no longer than this."""


@dataclass(frozen=True)
class DecodeOptions:
    """What the chunks of one `generate` call must share."""

    language: str
    task: str
    prompt: str | None
    temperature: float
    word_timestamps: bool


@dataclass
class Chunk:
    features: np.ndarray
    meta: dict[str, Any]
    """faster-whisper's chunk metadata: offset and duration in seconds of speech."""
    options: DecodeOptions
    job: Job | None


@dataclass
class Prepared:
    chunks: list[Chunk]
    speech: list[dict[str, int]]
    """VAD's speech spans (samples), to map chunk times back to the file's."""
    duration: float


class SpeechEngine:
    padded = False
    concurrency = 1

    def __init__(self, resolved: ResolvedModel, device: Any, cpu_threads: int | None = None) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        cuda = getattr(device, "type", "cpu") == "cuda"
        self.name = resolved.name
        self.model = WhisperModel(
            resolved.source,
            device="cuda" if cuda else "cpu",
            device_index=(device.index or 0) if cuda else 0,
            compute_type="float16" if cuda else "int8",
            cpu_threads=cpu_threads or len(os.sched_getaffinity(0)),
        )
        self.pipeline = BatchedInferencePipeline(self.model)
        weights = Path(resolved.source) / "model.bin"
        self.memory_bytes = weights.stat().st_size if weights.is_file() else 0
        self.multilingual = bool(self.model.model.is_multilingual)
        self.batch_chunks = 16 if cuda else 8
        """30 s chunks per `generate` call."""

    def details(self) -> EngineDetails:
        return EngineDetails()

    def close(self) -> None:
        self.model.model.unload_model()

    # ------------------------------------------------------------------ the preparation thread

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one engine per loaded model, kept for its life
    def _decoding(self, options: DecodeOptions) -> tuple[Any, Any]:
        """faster-whisper's tokenizer and options for one set of decoding options."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task=options.task, language=options.language)
        settings = TranscriptionOptions(
            beam_size=5, best_of=5, patience=1, length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0,
            log_prob_threshold=-1.0, no_speech_threshold=0.6, compression_ratio_threshold=2.4,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5, temperatures=[options.temperature],
            initial_prompt=options.prompt, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), without_timestamps=True,
            max_initial_timestamp=0.0, word_timestamps=options.word_timestamps,
            prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False, max_new_tokens=None, clip_timestamps="0", hallucination_silence_threshold=None,
            hotwords=None,
        )
        return tokenizer, settings

    def detect_language(self, audio: np.ndarray) -> str:
        if not self.multilingual:
            return "en"
        language, _probability, _all = self.model.detect_language(audio)
        return str(language)

    def prepare(self, audio: np.ndarray, options: DecodeOptions, job: Job | None) -> Prepared:
        """VAD, chunks and features for one file (CPU work, off the event loop)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        vad = VadOptions(max_speech_duration_s=CHUNK_SECONDS, min_silence_duration_ms=160)
        speech = get_speech_timestamps(audio, vad)
        chunks: list[Chunk] = []
        if speech:
            pieces, metas = collect_chunks(audio, speech, max_duration=CHUNK_SECONDS)
            for piece, meta in zip(pieces, metas, strict=True):
                features = pad_or_trim(self.model.feature_extractor(piece)[..., :-1])
                chunks.append(Chunk(features, meta, options, job))
        return Prepared(chunks, speech, duration=audio.shape[0] / RATE)

    # ------------------------------------------------------------------ the model thread

    def run(self, batch: list[Chunk]) -> Iterable[list[dict[str, Any]]]:
        """Each chunk's segments (times on the chunk's clock of speech), in batch order."""
        results: list[list[dict[str, Any]]] = [[] for _ in batch]
        groups: dict[DecodeOptions, list[int]] = {}
        for index, chunk in enumerate(batch):
            groups.setdefault(chunk.options, []).append(index)
        for options, indices in groups.items():
            tokenizer, settings = self._decoding(options)
            features = np.stack([batch[i].features for i in indices])
            self.pipeline.last_speech_timestamp = 0.0
            outputs = self.pipeline.forward(features, tokenizer, [batch[i].meta for i in indices], settings)
            for i, output in zip(indices, outputs, strict=True):
                results[i] = output
                job = batch[i].job
                if job is not None:  # progress in seconds of audio
                    job.done = min(job.total, job.done + round(batch[i].meta["duration"]))
        return results


def segments(prepared: Prepared, outputs: list[list[dict[str, Any]]], temperature: float) -> list[Any]:
    """faster-whisper Segments of one file, in order, with times on the file's clock."""
    from faster_whisper.transcribe import Segment, Word, restore_speech_timestamps

    found: list[Segment] = []
    for output in outputs:
        for seg in output:
            words = [Word(**w) for w in seg["words"]] if "words" in seg else None
            found.append(Segment(
                id=len(found) + 1, seek=seg["seek"], start=round(seg["start"], 3), end=round(seg["end"], 3),
                text=seg["text"], tokens=seg["tokens"], avg_logprob=seg["avg_logprob"],
                compression_ratio=seg["compression_ratio"], no_speech_prob=seg["no_speech_prob"],
                words=words, temperature=temperature,
            ))
    return list(restore_speech_timestamps(found, prepared.speech, RATE))
