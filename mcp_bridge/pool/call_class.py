"""The class and tenant of one bridge call, decided once for the whole call (docs/sharing.md).

The client decides a call's class when it starts (`classed`), from the caller (`current_caller`: what it
asked for and what it may use) and the call's size (gpu_protocol.priority, the rule the service uses too).
Every shard of the call runs in a task started inside it, so each inherits the same class: a 256-text call
is batch for all of its shards, even those of 64 texts. The pool reads it (`current_class`) to queue the
shard for a host slot (fair_share.py) and to tell the host (`X-GPU-Priority`, `X-GPU-Tenant`). Where the
bridge could only guess the size (an audio file it did not decode), the host is not told a class the
caller did not choose: it decides by what it decodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gpu_protocol.priority import PRIORITIES, Priority
from mcp_bridge.pool.caller import current_caller


@dataclass(frozen=True)
class CallClass:
    priority: Priority
    tenant: str = ""
    """The caller's tenant ("" when none: the service then shares by its own key)."""
    told: bool = True
    """Whether the hosts are told `priority` (False: a guess from the call's size, which they decide better)."""

    @property
    def told_priority(self) -> Priority | None:
        """The class the hosts are told (`X-GPU-Priority`), None where they decide it themselves."""
        return self.priority if self.told else None


current_class: ContextVar[CallClass | None] = ContextVar("current_class", default=None)
"""The class of the call being served; None for work no call decided (the pool's own probes, a caller of
the pool that decides nothing: its requests carry no class and the service decides by their size)."""


def decide(by_size: Priority, *, sized: bool = True) -> CallClass:
    """The class of a call whose size says `by_size`, for the current caller. `sized=False`: `by_size` is a
    guess; the hosts are then told the class only where the caller chose it (asked for one, or may use
    no higher)."""
    caller = current_caller.get()
    chosen = caller.priority(by_size)
    return CallClass(chosen, caller.tenant,
                     told=sized or caller.asked is not None or caller.highest != PRIORITIES[0])


def call_priority() -> Priority | None:
    """The current call's class at the bridge (None: no call decided one), for the hosts it may use now."""
    chosen = current_class.get()
    return chosen.priority if chosen else None


@contextmanager
def classed(by_size: Priority, *, sized: bool = True) -> Iterator[CallClass]:
    """Decide the current call's class (`decide`) and hold it for everything the call does."""
    chosen = decide(by_size, sized=sized)
    token = current_class.set(chosen)
    try:
        yield chosen
    finally:
        current_class.reset(token)
