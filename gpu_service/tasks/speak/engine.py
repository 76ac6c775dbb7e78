"""The Piper engine: a Piper (VITS) voice run with onnxruntime, phonemes from espeak-ng.

`prepare` turns a request's sentences into `Utterance`s (phoneme ids, on a worker thread: it runs
espeak-ng); `run` takes a batch of utterances from any number of requests and answers one float32 array
per utterance at the voice's `sample_rate`. `synthesize` is the two in a row.

Batches. The voice's one `scales` input (noise, length, noise width) holds for a whole model call, so
utterances of different speeds never share one: `run` groups them by speed. Within a group, several
utterances go through one model call, their ids padded and their `input_lengths` given; the model then
answers one array as long as the longest. Each one's own length is read from the duration predictor's
output (onnx_graph.py exposes it: frames per phoneme id; samples = frames x the decoder's hop, measured
at load), so the batch is cut back exactly. A voice whose graph does not expose durations is run one
utterance per call (`batches` is False), which is always correct.

Batches pay on a GPU only. On a CPU a padded batch costs its padding (16 sentences of 1 to 7 s took 1.6x
the time of the same sentences one by one) and even sentences of one length ran no faster together;
what pays there is one model call per core, each on one thread (Piper's convolutions scale poorly over
intra-op threads: about 8 s of audio per CPU second on one thread against 5-6 on two, measured on 2
vCPUs). So by default an engine batches on CUDA only (`batch_calls`); on a CPU its session runs one
intra-op thread, `run` makes one model call per utterance, and the engine's `concurrency` (one per allowed
core, or `threads`) tells the model's scheduler to run that many single-utterance batches at once, each on
its own thread: every core stays busy while sentences wait, and the class order holds per sentence.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gpu_service.models.engine import EngineDetails
from gpu_service.tasks.speak.decoder_2d import decoder_as_2d
from gpu_service.tasks.speak.onnx_graph import with_extra_output
from gpu_service.tasks.speak.phonemize import EspeakPhonemizer, Phonemizer
from gpu_service.tasks.speak.voices import VoiceConfig, VoiceFiles, load_config

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

MAX_BATCH = 16
"""Utterances per model call at most."""
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Utterance:
    """One sentence, ready for the model."""

    ids: tuple[int, ...]
    speed: float = 1.0
    """1.0 is the voice's own pace; 2.0 speaks in half the time."""
    speaker: int = 0


@dataclass(frozen=True)
class Noise:
    """The voice's randomness (`.onnx.json` `inference`), overridable (0, 0: the same audio every time)."""

    scale: float
    width: float


def providers() -> list[str]:
    """onnxruntime's CUDA provider first when this install has it (onnxruntime-gpu), else the CPU."""
    import onnxruntime  # when a voice loads: a service that does not speak never imports it (see _load)

    available = onnxruntime.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


class PiperEngine:
    """A loaded Piper voice (see the module docstring)."""

    def __init__(self, files: VoiceFiles, *, threads: int | None = None, noise: Noise | None = None,
                 phonemizer: Phonemizer | None = None, batch_calls: bool | None = None) -> None:
        """`threads`: the CPU threads to use (None: every allowed core); `batch_calls`: several utterances
        per model call (None: on CUDA only, see the module docstring)."""
        self.name = files.name
        self.files = files
        self.config: VoiceConfig = load_config(files)
        self.sample_rate = self.config.sample_rate
        self.noise = noise or Noise(self.config.noise_scale, self.config.noise_w)
        self.phonemizer: Phonemizer = phonemizer or EspeakPhonemizer(self.config.espeak_voice)
        self.memory_bytes = files.model.stat().st_size
        self.batch_calls = CUDA in providers() if batch_calls is None else batch_calls
        self.decoder_lifted = False
        """Whether the session runs the decoder as 2-D convolutions (decoder_2d.py; on a CPU, when it applies)."""
        self.session, self._durations = self._load(threads if self.batch_calls else 1)
        if batch_calls is None and self.batch_calls and self.session.get_providers()[0] != CUDA:
            log.warning("voice %s: onnxruntime has CUDA but the session runs on the CPU; one call per core", self.name)
            self.batch_calls = False
            self.session, self._durations = self._load(1)
        self.concurrency = 1 if self.batch_calls else max(1, threads or len(os.sched_getaffinity(0)))
        """Model calls at once, each on one thread (1 when calls are batched; see Engine)."""
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.device = self.session.get_providers()[0]
        self.samples_per_frame = self._measure_hop() if self._durations and self.batch_calls else 0
        self.batches = self.samples_per_frame > 0
        self.padded = self.batches
        """The scheduler's cost model: a padded batch costs count x longest; single calls their own ids."""

    def _load(self, threads: int | None) -> tuple[onnxruntime.InferenceSession, str | None]:
        # Imported here, not with the module: importing onnxruntime opens its telemetry database and starts a
        # thread, which a service without a voice has no use for.
        import onnxruntime

        model = self.files.model.read_bytes()
        patched = with_extra_output(model)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if patched is None:
            log.warning("voice %s: no duration output in its graph; one sentence per model call", self.name)
        graph = patched[0] if patched else model
        session = onnxruntime.InferenceSession(graph, options, providers=providers())
        if session.get_providers()[0] == CPU:
            session = self._lifted(graph, session)
        return session, patched[1] if patched else None

    def _lifted(self, graph: bytes, shipped: onnxruntime.InferenceSession) -> onnxruntime.InferenceSession:
        """The session with the decoder as 2-D convolutions (decoder_2d.py: faster on a CPU) when the rewrite
        applies and answers what the shipped graph answers (every output, checked here on one phrase); else
        `shipped`."""
        import onnxruntime

        try:
            lifted_graph = decoder_as_2d(graph)
            if lifted_graph is None:
                log.info("voice %s: its decoder is not one decoder_2d.py lifts; the graph runs as shipped", self.name)
                return shipped
            lifted = onnxruntime.InferenceSession(lifted_graph, shipped.get_session_options(), providers=[CPU])
            # One short phrase without randomness: the same audio from any graph that computes the voice.
            phrase = Utterance(tuple(self.config.ids(list("həlˈoʊ wˈɜːld."))))
            probe = model_feeds([phrase], self.config.length_scale, Noise(0.0, 0.0),
                                [i.name for i in shipped.get_inputs()])
            outputs = [o.name for o in shipped.get_outputs()]
            expected, answered = (s.run(outputs, probe) for s in (shipped, lifted))
        except Exception as exc:  # a graph the reader cannot parse; onnxruntime's errors have no common base
            log.warning("voice %s: the lifted decoder failed (%s); the graph runs as shipped", self.name, exc)
            return shipped
        if any(e.shape != a.shape or not np.allclose(e, a, atol=1e-4) for e, a in zip(expected, answered, strict=True)):
            log.warning("voice %s: the lifted decoder answered other audio; the graph runs as shipped", self.name)
            return shipped
        log.info("voice %s: the decoder runs as 2-D convolutions (the same audio as shipped, checked)", self.name)
        self.decoder_lifted = True
        return lifted

    def _measure_hop(self) -> int:
        """Samples per duration frame (256 for Piper voices), from one short utterance (also the warm-up)."""
        ids = self.config.ids(list("a"))
        audio, frames = self._call([Utterance(tuple(ids))], 1.0)
        total = int(frames[0].sum())
        hop = audio.shape[-1] // total if total else 0
        if not total or hop * total != audio.shape[-1]:
            log.warning("voice %s: audio (%d) is no whole number of frames (%d); one sentence per model call",
                        self.name, audio.shape[-1], total)
            return 0
        return hop

    @property
    def voices(self) -> list[str]:
        """The voice's speakers by name, or the voice's own name when it has one speaker."""
        return sorted(self.config.speakers) or [self.name]

    def prepare(self, sentences: Sequence[str], speed: float = 1.0, speaker: int = 0) -> list[Utterance]:
        """Phoneme ids per sentence (runs espeak-ng: call it on a worker thread)."""
        return [self.utterance(p, speed, speaker) for p in self.phonemizer.phonemes(list(sentences))]

    def utterance(self, phonemes: list[str], speed: float = 1.0, speaker: int = 0) -> Utterance:
        """A sentence's phonemes (`phonemizer`'s answer) ready for the model."""
        return Utterance(tuple(self.config.ids(phonemes)), speed, speaker)

    def synthesize(self, sentences: Sequence[str], speed: float = 1.0) -> list[np.ndarray]:
        """Each sentence's audio, float32 mono at `sample_rate`."""
        return list(self.run(self.prepare(sentences, speed)))

    def run(self, batch: list[Utterance]) -> Iterable[np.ndarray]:
        """One float32 array per utterance, in order: same-speed utterances share model calls, neighbours in
        length together (less padding when there are more than MAX_BATCH)."""
        if not self.batches:  # one call per utterance (the scheduler runs `concurrency` of these at once)
            return [self._synthesize_call([u], u.speed)[0] for u in batch]
        audio: list[np.ndarray | None] = [None] * len(batch)
        by_speed = sorted(range(len(batch)), key=lambda i: (batch[i].speed, len(batch[i].ids)))
        for speed, group in itertools.groupby(by_speed, key=lambda i: batch[i].speed):
            indices = list(group)
            size = MAX_BATCH if self.batches else 1
            for start in range(0, len(indices), size):
                part = indices[start:start + size]
                for i, samples in zip(part, self._synthesize_call([batch[i] for i in part], speed), strict=True):
                    audio[i] = samples
        return [a for a in audio if a is not None]

    def _synthesize_call(self, utterances: list[Utterance], speed: float) -> list[np.ndarray]:
        output, frames = self._call(utterances, speed)
        if len(utterances) == 1:
            return [_clip(output[0])]
        return [_clip(output[i, :int(f.sum()) * self.samples_per_frame]) for i, f in enumerate(frames)]

    def _call(self, utterances: list[Utterance], speed: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """One model call: audio [batch, samples] (padded to the longest) and each one's frames per id."""
        feeds = model_feeds(utterances, self.config.length_scale / speed, self.noise, self._inputs)
        lengths = feeds["input_lengths"]
        outputs = self.session.run(["output", *([self._durations] if self._durations else [])], feeds)
        audio = outputs[0].reshape(len(utterances), -1)
        frames = [outputs[1][i].reshape(-1)[:lengths[i]] for i in range(len(utterances))] if self._durations else []
        return audio, frames

    def details(self) -> EngineDetails:
        return EngineDetails(speakers=sorted(self.config.speakers) or None)

    def close(self) -> None:
        del self.session


def model_feeds(utterances: Sequence[Utterance], length_scale: float, noise: Noise,
                inputs: Collection[str]) -> dict[str, np.ndarray]:
    """One model call's inputs: the utterances' ids padded to the longest, their lengths, the scales (noise,
    length, noise width) and, for a voice with several speakers (`sid` in `inputs`), each one's speaker."""
    lengths = np.array([len(u.ids) for u in utterances], dtype=np.int64)
    ids = np.zeros((len(utterances), int(lengths.max())), dtype=np.int64)
    for row, utterance in enumerate(utterances):
        ids[row, :len(utterance.ids)] = utterance.ids
    feeds: dict[str, np.ndarray] = {"input": ids, "input_lengths": lengths,
                                    "scales": np.array([noise.scale, length_scale, noise.width], dtype=np.float32)}
    if "sid" in inputs:
        feeds["sid"] = np.array([u.speaker for u in utterances], dtype=np.int64)
    return feeds


def _clip(samples: np.ndarray) -> np.ndarray:
    return np.clip(samples, -1.0, 1.0).astype(np.float32)
