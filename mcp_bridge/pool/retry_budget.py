"""How many retries the pool may spend: a share of recent requests plus a small floor."""

from __future__ import annotations

import collections
from collections.abc import Callable

Clock = Callable[[], float]


class RetryBudget:
    """Retries allowed in the last `window` seconds: `ratio` of the requests plus a floor of
    `min_per_s` per second (Finagle's defaults: 20%, 10/s, 10 s).

    The floor lets a burst through when one host dies with many requests in flight (they
    all need a new host at once); the ratio stops a storm when every host is failing."""

    def __init__(self, ratio: float, clock: Clock, window: float = 10.0, min_per_s: float = 10.0) -> None:
        self.ratio = ratio
        self.window = window
        self.floor = int(min_per_s * window)
        self._clock = clock
        self._requests: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()

    def _trim(self) -> None:
        edge = self._clock() - self.window
        for q in (self._requests, self._retries):
            while q and q[0] < edge:
                q.popleft()

    def record_request(self) -> None:
        self._requests.append(self._clock())

    def try_spend(self) -> bool:
        self._trim()
        if len(self._retries) < self.floor + self.ratio * len(self._requests):
            self._retries.append(self._clock())
            return True
        return False
