"""The rules every request of the wire schema shares, and how their failures read.

The protocol's models use these; both the service (its 422s) and the bridge (its tool
errors, and what it says about a host's malformed answer) turn pydantic's errors into words
with `validation_message`, so the same mistake reads the same on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def check_not_blank(values: list[str], field: str) -> list[str]:
    """Every text must have something to embed: `field[i] is blank` names the first that has not."""
    for i, text in enumerate(values):
        if not text.strip():
            raise ValueError(f"{field}[{i}] is blank: every text needs at least one non-whitespace character")
    return values


def error_location(loc: Iterable[int | str]) -> str:
    """Where a validation error is, as a caller writes it: `("texts", 1)` -> `texts[1]`."""
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        else:
            where += f".{part}" if where else str(part)
    return where


_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")
MAX_ERRORS_SHOWN = 5


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's validation errors in plain words, each naming the field and index.

    One function for both sides: the service's 422s and the bridge's tool errors say the
    same (`texts[1] is blank: ...`), with no exception class names and no pydantic dump
    (input values and documentation links are left out)."""
    parts = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        where = error_location(err.get("loc", ()))
        message = str(err.get("msg", "invalid value"))
        for prefix in _PYDANTIC_PREFIXES:
            message = message.removeprefix(prefix)
        # Our own validators name the field themselves ("texts[1] is blank"); pydantic's do not.
        parts.append(message if not where or message.startswith(where) else f"{where}: {message}")
    if len(errors) > MAX_ERRORS_SHOWN:
        parts.append(f"and {len(errors) - MAX_ERRORS_SHOWN} more")
    return "; ".join(parts)


__all__ = ["check_not_blank", "error_location", "validation_message"]
