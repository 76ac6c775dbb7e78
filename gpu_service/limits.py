"""The protocol's texts rule (gpu_protocol.validation), as the service's errors: shared by the text tasks
(embed, rerank, BERTScore)."""

from __future__ import annotations

from gpu_protocol import validation
from gpu_service.errors import TooLarge, Unprocessable
from gpu_service.settings import Settings


def check_texts(field: str, texts: list[str] | str, settings: Settings) -> None:
    """The protocol's one texts rule (non-blank, GPU_MAX_TEXTS, GPU_MAX_TEXT_CHARS) as the service's
    errors; `texts` is a list of them, or one (a query)."""
    limits = settings.limits
    try:
        if isinstance(texts, str):
            validation.check_text(texts, field, max_text_chars=limits.max_text_chars)
        else:
            validation.check_texts(texts, field, max_texts=limits.max_texts, max_text_chars=limits.max_text_chars)
    except validation.TextsRejected as rejected:
        raise (TooLarge if rejected.status == 413 else Unprocessable)(rejected.message) from None
