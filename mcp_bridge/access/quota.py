"""A client's quotas: calls per minute, items per minute, calls at once.

Each per-minute limit is a token bucket that holds a minute's worth and refills evenly (`requestsPerMinute:
60` is a burst of 60, then one a second), so a client that keeps within its rate is never refused, and one
that is over learns exactly when the next call fits: `Retry-After` is computed from the refill rate, in whole
seconds, never 0. A call with more items than a whole minute allows can never fit and is refused as too large
(split it), not with a Retry-After that would not help. Every clock is injectable: tests need no sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

IN_FLIGHT_RETRY_S = 1
"""Retry-After when a client has `maxInFlight` calls running (how long they take is not known)."""


class TokenBucket:
    """`per_minute` tokens at most, refilled at `per_minute / 60` a second."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._level = self.capacity
        self._at = clock()

    def level(self) -> float:
        now = self.clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
        self._at = now
        return self._level

    def seconds_until(self, amount: int) -> float:
        """How long until `amount` tokens are there (0: now)."""
        return max(0.0, (amount - self.level()) / self.rate)

    def take(self, amount: int) -> None:
        self._level = self.level() - amount


@dataclass(frozen=True)
class Remaining:
    """What a client has left this minute (None: no such limit), for `x-ratelimit-remaining-*`."""

    requests: int | None = None
    items: int | None = None


class OverQuota(Exception):
    """Over a quota now; `retry_after` whole seconds (at least 1) until the call would fit."""

    def __init__(self, message: str, retry_after: int, remaining: Remaining) -> None:
        super().__init__(message)
        self.retry_after, self.remaining = retry_after, remaining


class TooLarge(Exception):
    """More items in one call than the client's whole `itemsPerMinute`: it never fits; split it."""


class Quota:
    """One client's limits (None: unlimited) and what it has used of them."""

    def __init__(self, requests_per_minute: int | None, items_per_minute: int | None, max_in_flight: int | None,
                 clock: Clock = time.monotonic) -> None:
        self.requests = TokenBucket(requests_per_minute, clock) if requests_per_minute else None
        self.items = TokenBucket(items_per_minute, clock) if items_per_minute else None
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def remaining(self) -> Remaining:
        return Remaining(None if self.requests is None else math.floor(self.requests.level()),
                         None if self.items is None else math.floor(self.items.level()))

    def admit(self, items: int) -> Remaining:
        """Take one call of `items` (and one place in flight; `release` gives it back), or raise OverQuota /
        TooLarge and take nothing."""
        if self.items is not None and items > self.items.capacity:
            raise TooLarge(f"this call has {items} items, more than the {int(self.items.capacity)} a minute this "
                           "client may send (itemsPerMinute); split it into smaller calls")
        if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
            raise OverQuota(f"{self.in_flight} calls of this client are running, its maxInFlight; retry in "
                            f"{IN_FLIGHT_RETRY_S} s, or when one has finished", IN_FLIGHT_RETRY_S, self.remaining())
        waits = [(bucket.seconds_until(amount), what) for bucket, amount, what in
                 ((self.requests, 1, "requestsPerMinute"), (self.items, items, "itemsPerMinute")) if bucket]
        wait, what = max(waits, default=(0.0, ""))
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise OverQuota(f"over this client's {what}; retry in {retry_after} s", retry_after, self.remaining())
        for bucket, amount in ((self.requests, 1), (self.items, items)):
            if bucket is not None:
                bucket.take(amount)
        self.in_flight += 1
        return self.remaining()

    def release(self) -> None:
        self.in_flight -= 1
