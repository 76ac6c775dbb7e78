"""The callers of `bench/fairness.py`: an interactive caller paced like an agent, bulk clients posting
in a loop, and the phase that runs them side by side. Every loop is bounded in calls and in time.

A caller is a `Post`: one call that returns how many texts were served (0 when refused), so the same
loops drive an HTTP endpoint, an MCP tool, our service or a peer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench.peers_corpus import WORDS, corpus

BULK_TEXTS = 256
"""Texts per bulk request: what an indexer sends (the bridge's shard size)."""
MEMORY_CHUNKS, MEMORY_WORDS = 20, (280, 320)
"""OpenClaw's memory index: 20 chunks of ~300 words per `/v1/embeddings` request (~8,000 tokens)."""
PACE_S = (0.200, 0.250)
"""An interactive call every 200-250 ms (jittered)."""
CALL_TIMEOUT_S = 180.0
"""No call waits longer: every phase ends by itself even when a server stops answering."""


@dataclass(frozen=True)
class Call:
    started: float
    seconds: float
    texts: int
    """Texts served; 0 when the call was refused or failed."""
    outcome: str
    """"ok", an HTTP status, "tool error" or an exception's name."""

    @property
    def ended(self) -> float:
        return self.started + self.seconds


Post = Callable[[], Awaitable[tuple[int, str]]]
"""One call: (texts served, outcome)."""


@dataclass
class Phase:
    start: float
    seconds: float
    interactive: list[Call] = field(default_factory=list)
    bulk: list[list[Call]] = field(default_factory=list)
    """Per bulk client, its calls in order."""

    def bulk_rate(self) -> float:
        """Texts served per second, from the phase's start to the last bulk answer."""
        calls = [c for client in self.bulk for c in client]
        if not calls:
            return 0.0
        return sum(c.texts for c in calls) / max(1e-9, max(c.ended for c in calls) - self.start)

    def served_by(self, clients: range, until: float) -> int:
        """Texts served to `clients` (bulk indexes) by answers that came before `until`."""
        return sum(c.texts for i in clients for c in self.bulk[i] if c.ended <= until)


def latencies(calls: list[Call]) -> list[float]:
    return [c.seconds for c in calls if c.outcome == "ok"]


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def failed(calls: list[Call]) -> int:
    return sum(c.outcome != "ok" for c in calls)


# --------------------------------------------------------------------------- what the callers send


def short_texts() -> list[str]:
    """The interactive caller's texts: the corpus' texts of at most 20 words (a query, an agent's note)."""
    return [t for t in corpus() if len(t.split()) <= 20]


def bulk_texts(rng: random.Random) -> list[str]:
    """256 distinct mixed-length texts of the peers' corpus (3-60 words)."""
    return rng.sample(corpus(), BULK_TEXTS)


def memory_chunks(rng: random.Random) -> list[str]:
    """20 fresh chunks of ~300 words: one request of OpenClaw's memory indexer."""
    return [" ".join(rng.choices(WORDS, k=rng.randint(*MEMORY_WORDS))).capitalize() + "."
            for _ in range(MEMORY_CHUNKS)]


Body = Callable[[random.Random], dict[str, Any]]
"""A call's JSON body, drawn with the caller's own random stream."""


def texts_body(field_name: str, draw: Callable[[random.Random], list[str]], **extra: Any) -> Body:
    """`{field_name: draw(rng), **extra}`: `texts` for `/embed`, `input` for OpenAI's embeddings."""
    return lambda rng: {field_name: draw(rng), **extra}


def one_short(texts_: list[str]) -> Callable[[random.Random], list[str]]:
    return lambda rng: [rng.choice(texts_)]


def http_post(http: httpx.AsyncClient, url: str, body: Body, seed: int,
              headers: dict[str, str] | None = None) -> Post:
    """A caller that POSTs `body` to `url`; served when the answer is 200 (the vectors are not read: the
    bench's own CPU stays out of the measurement)."""
    rng = random.Random(seed)

    async def post() -> tuple[int, str]:
        payload = body(rng)
        sent = payload.get("texts") or payload.get("input") or []
        response = await http.post(url, json=payload, headers=headers)
        await response.aread()
        return (len(sent), "ok") if response.status_code == 200 else (0, str(response.status_code))

    return post


# --------------------------------------------------------------------------- the loops


async def timed(post: Post) -> Call:
    started = time.monotonic()
    try:
        texts, outcome = await asyncio.wait_for(post(), CALL_TIMEOUT_S)
    except Exception as exc:  # counted as a failed call, never hidden
        texts, outcome = 0, type(exc).__name__
    return Call(started, time.monotonic() - started, texts, outcome)


async def paced(post: Post, stop: asyncio.Event, hard_stop: float, max_calls: int, seed: int) -> list[Call]:
    """One interactive call every 200-250 ms, each started on time whether or not the previous one has
    answered (an agent does not wait for someone else's backlog), until `stop`, `hard_stop` or `max_calls`."""
    rng = random.Random(seed)
    tasks: list[asyncio.Task[Call]] = []
    next_at = time.monotonic()
    while len(tasks) < max_calls and not stop.is_set() and time.monotonic() < hard_stop:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if stop.is_set():
            break
        tasks.append(asyncio.create_task(timed(post)))
        next_at += rng.uniform(*PACE_S)
    return list(await asyncio.gather(*tasks))


async def looped(post: Post, stop_at: float, max_calls: int) -> list[Call]:
    """A bulk client: one call after another until `stop_at` (the call in flight then is finished)."""
    calls: list[Call] = []
    while len(calls) < max_calls and time.monotonic() < stop_at:
        calls.append(await timed(post))
    return calls


async def phase(seconds: float, interactive: Post | None = None, bulk: list[Post] | None = None,
                seed: int = 0) -> Phase:
    """Run the bulk clients for `seconds` (each finishes its call in flight) and the interactive caller
    beside them until the last bulk answer (alone: for `seconds`)."""
    bulk = bulk or []
    start = time.monotonic()
    stop_at = start + seconds
    stop = asyncio.Event()
    max_bulk_calls = int(seconds) + 2  # no bulk call is faster than a second on any machine this runs on
    bulk_tasks = [asyncio.create_task(looped(post, stop_at, max_bulk_calls)) for post in bulk]
    pacer = None
    if interactive is not None:
        hard_stop = stop_at + CALL_TIMEOUT_S
        max_calls = int((hard_stop - start) / PACE_S[0]) + 1
        pacer = asyncio.create_task(paced(interactive, stop, hard_stop, max_calls, seed))
    if bulk_tasks:
        results = list(await asyncio.gather(*bulk_tasks))
    else:
        results = []
        await asyncio.sleep(seconds)
    stop.set()
    return Phase(start, seconds, await pacer if pacer is not None else [], results)
