"""Balancing strategies: which of the usable hosts gets the next request.

- round-robin: smooth weighted round-robin (nginx's algorithm);
- least-busy: fewest outstanding requests per unit of weight (`Host.load`), ties broken at
  random, power-of-two-choices above 8 hosts.
The pool decides which hosts are candidates (able, not excluded, with capacity, usable);
a strategy only chooses among them.
"""

from __future__ import annotations

import collections
import random
from typing import Literal, Protocol

from mcp_bridge.pool.hosts import Host

Strategy = Literal["round-robin", "least-busy"]


class Balancer(Protocol):
    def choose(self, hosts: list[Host]) -> Host:
        """One of `hosts` (never empty)."""
        ...


class WeightedRoundRobin:
    def __init__(self) -> None:
        self._current: collections.defaultdict[str, float] = collections.defaultdict(float)

    def choose(self, hosts: list[Host]) -> Host:
        total = sum(h.weight for h in hosts)
        for h in hosts:
            self._current[h.name] += h.weight
        chosen = max(hosts, key=lambda h: self._current[h.name])
        self._current[chosen.name] -= total
        return chosen


class LeastBusy:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, hosts: list[Host]) -> Host:
        if len(hosts) > 8:
            hosts = self._rng.sample(hosts, 2)  # power of two choices
        best = min(h.load() for h in hosts)
        return self._rng.choice([h for h in hosts if h.load() == best])


def balancer(strategy: Strategy, rng: random.Random) -> Balancer:
    return WeightedRoundRobin() if strategy == "round-robin" else LeastBusy(rng)
