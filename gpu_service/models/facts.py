"""Facts about a model that more than one engine needs: what kind of model a directory holds, and
how much memory its parameters take. Imports no engine, so every engine can import it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SEQUENCE_CLASSIFICATION = "ForSequenceClassification"
"""The architecture suffix of a cross-encoder (a reranker) in its config.json."""


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_cross_encoder(source: str) -> bool:
    """Whether a local model directory holds a cross-encoder (reads two small files; False if unsure).

    sentence-transformers marks the cross-encoders it saves; older ones (and plain
    Hugging Face rerankers) are sequence-classification models without a modules.json."""
    directory = Path(source)
    st_config = _read_json(directory / "config_sentence_transformers.json")
    if isinstance(st_config, dict) and st_config.get("model_type") == "CrossEncoder":
        return True
    config = _read_json(directory / "config.json")
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not architectures:
        return False
    return all(str(a).endswith(SEQUENCE_CLASSIFICATION) for a in architectures) and not (
        directory / "modules.json"
    ).is_file()
