"""Limits of one request, shared so the bridge refuses a bad call with the numbers a host would use,
before it leaves the agent's machine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Hard limits of one request. The service reads overrides from its environment."""

    max_texts: int = 4096
    """Texts (or candidate/reference pairs) in one request; more gets 413."""
    max_text_chars: int = 32_768
    """Characters in one text; more gets 422."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Request body size; more gets 413 before the body is parsed."""


DEFAULT_LIMITS = Limits()

SIMILARITY_MATRIX_MAX = 64
"""Texts in one `matrix` similarity request: the answer grows with the square."""
SIMILARITY_TOP_K_MAX = 1000
"""Matches one `query` similarity request may ask for."""
