"""Priority classes: an agent's call never waits behind someone's bulk job (docs/sharing.md).

Two classes, `interactive` and `batch`. Unless a caller says otherwise, a request's size decides: a few
texts of under `INTERACTIVE_MAX_TOKENS` tokens in all (a query, an agent's call) are interactive, anything
larger is batch. `input_type` on `/v1/embeddings` is honoured (`query` interactive, `document`/`passage`
batch: what OpenClaw's memory sends), and the `X-GPU-Priority` header sets the class outright, within what
the caller may use. The bridge forwards the class and the tenant (`X-GPU-Tenant`) to the hosts, so the
service's queues apply the same order. One rule for both sides: this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, get_args

Priority = Literal["interactive", "batch"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
"""Highest first."""

PRIORITY_HEADER = "X-GPU-Priority"
TENANT_HEADER = "X-GPU-Tenant"

INTERACTIVE_MAX_ITEMS = 8
"""At most this many texts (or BERTScore pairs) in an interactive request."""
INTERACTIVE_MAX_TOKENS = 1000
"""At most this many tokens in all in an interactive request (OpenClaw's memory indexes ~8,000 per call)."""
INTERACTIVE_MAX_DOCUMENTS = 100
"""A rerank query over at most this many documents (a page of search results) is interactive."""
INTERACTIVE_MAX_AUDIO_S = 60.0
"""An audio file up to a minute (a voice note) is interactive."""
INTERACTIVE_MAX_SPEAK_CHARS = 1000
"""Text to speech of up to this many characters (about a minute of speech: a reply) is interactive."""

BATCH_SHARE_EVERY = 4
"""While both classes wait, at least one turn in this many goes to batch work (the service's batches, the
bridge's host slots)."""
BATCH_MAX_WAIT_S = 10.0
"""Batch work that has waited this long gets every other turn (`AGED_SHARE_EVERY`), not one in four. Not every
turn: a bulk backlog longer than this (1,024 texts on a CPU doing 60 a second) would then take every turn for as
long as it lasts, and an agent's call wait seconds behind it."""
AGED_SHARE_EVERY = 2

CHARS_PER_TOKEN = 4
"""Where no tokenizer is at hand (the bridge), a text counts as one token per this many characters, rounded
up: about what BERT-style and GPT-style tokenizers give for English prose."""
AUDIO_BYTES_PER_SECOND = 16_000
"""Where an audio file's length is unknown (not decoded, not a WAV file), the bridge counts it as one second per
this many bytes (a 128 kbit/s MP3 or AAC file, the usual voice note) for its own slot gate; it does not tell the
host a class so guessed (the host decides from the decoded length)."""

_BATCH_INPUT_TYPES = {"document", "passage"}
_INTERACTIVE_INPUT_TYPES = {"query"}
MAX_TENANT_CHARS = 64


def parse_priority(value: str | None) -> Priority | None:
    """The class an `X-GPU-Priority` header asks for; None when absent. Raises ValueError naming what is allowed."""
    if value is None or not value.strip():
        return None
    wanted = value.strip().lower()
    if wanted not in PRIORITIES:
        raise ValueError(f"{PRIORITY_HEADER} must be one of {', '.join(PRIORITIES)}, not {value.strip()[:40]!r}")
    return wanted  # type: ignore[return-value]  # checked against PRIORITIES just above


def parse_tenant(value: str | None) -> str:
    """The tenant an `X-GPU-Tenant` header names ("" when absent): printable, at most `MAX_TENANT_CHARS`."""
    tenant = (value or "").strip()
    if len(tenant) > MAX_TENANT_CHARS or not tenant.isprintable():
        raise ValueError(f"{TENANT_HEADER} must be at most {MAX_TENANT_CHARS} printable characters")
    return tenant


def by_size(*, items: int, tokens: int, input_type: str | None = None) -> Priority:
    """The class a text request gets when nobody said: `input_type` first, then its size."""
    kind = (input_type or "").lower()
    if kind in _BATCH_INPUT_TYPES:
        return "batch"
    if kind in _INTERACTIVE_INPUT_TYPES and tokens <= INTERACTIVE_MAX_TOKENS * 4:
        return "interactive"
    return "interactive" if items <= INTERACTIVE_MAX_ITEMS and tokens <= INTERACTIVE_MAX_TOKENS else "batch"


def estimate_tokens(texts: Iterable[str]) -> int:
    """The tokens `texts` hold by `CHARS_PER_TOKEN` (for `by_size` where no tokenizer is at hand)."""
    return sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts)


def estimate_audio_seconds(size_bytes: int) -> float:
    """An audio file's length by `AUDIO_BYTES_PER_SECOND`, for `audio_by_size` when it was not decoded."""
    return size_bytes / AUDIO_BYTES_PER_SECOND


def rerank_by_size(*, documents: int) -> Priority:
    return "interactive" if documents <= INTERACTIVE_MAX_DOCUMENTS else "batch"


def audio_by_size(*, seconds: float) -> Priority:
    return "interactive" if seconds <= INTERACTIVE_MAX_AUDIO_S else "batch"


def speak_by_size(*, characters: int) -> Priority:
    """A short reply is interactive; a long text (a chapter, an article) is batch."""
    return "interactive" if characters <= INTERACTIVE_MAX_SPEAK_CHARS else "batch"


def capped(asked: Priority, highest: Priority) -> Priority:
    """`asked`, lowered to `highest` where the caller may use no more (a batch client's calls are all batch)."""
    return asked if PRIORITIES.index(asked) >= PRIORITIES.index(highest) else highest


class ClassChooser:
    """Which class gets the next turn (a batch on the device, a free host slot): interactive first, while
    batch work keeps a guaranteed share (`BATCH_SHARE_EVERY`), every other turn once it has waited
    `BATCH_MAX_WAIT_S`."""

    def __init__(self, share_every: int = BATCH_SHARE_EVERY, max_wait_s: float = BATCH_MAX_WAIT_S) -> None:
        self.share_every = share_every
        self.max_wait_s = max_wait_s
        self._since_batch = 0

    def pick(self, waiting: dict[Priority, bool], batch_waited_s: float) -> Priority | None:
        """The class whose turn it is, without taking the turn (`ran` does, once a batch of it runs).
        `waiting`: whether each class has work; `batch_waited_s`: the batch class's longest wait."""
        present = [p for p in PRIORITIES if waiting.get(p)]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        share = min(self.share_every, AGED_SHARE_EVERY) if batch_waited_s >= self.max_wait_s else self.share_every
        if self._since_batch + 1 >= share:
            return "batch"
        return "interactive"

    def ran(self, priority: Priority) -> None:
        """A turn of `priority` was taken: count it towards the batch class's share."""
        self._since_batch = 0 if priority == "batch" else self._since_batch + 1

    def choose(self, waiting: dict[Priority, bool], batch_waited_s: float) -> Priority | None:
        """`pick`, its turn taken at once (for a caller whose pick always runs)."""
        chosen = self.pick(waiting, batch_waited_s)
        if chosen is not None:
            self.ran(chosen)
        return chosen
