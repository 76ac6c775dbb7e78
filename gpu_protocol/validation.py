"""The rules every request of the wire schema shares, and how their failures read.

The protocol's models use these; both the service (its 422s) and the bridge (its tool
errors, and what it says about a host's malformed answer) turn pydantic's errors into words
with `validation_message`, so the same mistake reads the same on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def check_not_blank(values: list[str], field: str) -> list[str]:
    """Every text must have something to embed: `field[i] is blank` names the first that has not.

    For a pydantic validator (a `TextsRejected` is a ValueError, so the 422 names the field): the blank
    rule of `check_texts`, without limits (those belong to the deployment, not to the schema)."""
    check_texts(values, field)
    return values


class TextsRejected(ValueError):
    """Texts outside a request's limits. `status`: 413 for too many texts (split the request), 422 for a
    blank or too long text; `field`: where, as the caller wrote it (`texts`, `texts[3]`)."""

    def __init__(self, message: str, *, status: int, field: str) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


def check_texts(
    texts: Sequence[str],
    field: str,
    *,
    max_texts: int | None = None,
    max_text_chars: int | None = None,
    holder: str = "this service",
    settings: tuple[str, str] = ("GPU_MAX_TEXTS", "GPU_MAX_TEXT_CHARS"),
) -> None:
    """The one check of a request's texts, for every entry point of both sides: each text non-blank,
    at most `max_texts` of them and `max_text_chars` characters each (None: no such limit).

    Raises `TextsRejected` naming the field (and index) and the limit; `holder` says whose limit it is
    ("this service", "this bridge") and `settings` the names of the two settings that set it, so the
    caller knows what to change."""
    texts_setting, chars_setting = settings
    if max_texts is not None and len(texts) > max_texts:
        raise TextsRejected(
            f"{field} has {len(texts)} items; {holder} accepts at most {max_texts} per request "
            f"({texts_setting}): split the request",
            status=413, field=field,
        )
    for i, text in enumerate(texts):
        check_text(text, f"{field}[{i}]", max_text_chars=max_text_chars, setting=chars_setting)


def check_text(text: str, field: str, *, max_text_chars: int | None = None, setting: str = "GPU_MAX_TEXT_CHARS") -> str:
    """`check_texts` for one text (a query): non-blank, at most `max_text_chars` characters (set by `setting`)."""
    if not text.strip():
        raise TextsRejected(f"{field} is blank: every text needs at least one non-whitespace character",
                            status=422, field=field)
    if max_text_chars is not None and len(text) > max_text_chars:
        raise TextsRejected(f"{field} has {len(text)} characters; at most {max_text_chars} are allowed ({setting})",
                            status=422, field=field)
    return text


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


__all__ = ["TextsRejected", "check_not_blank", "check_text", "check_texts", "error_location", "validation_message"]
