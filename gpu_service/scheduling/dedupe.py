"""Identical inputs in one request are computed once and fanned out.

Two copies of a text in one request would otherwise land at different places in
padded batches, and a batch's layout changes the last bits of a result on some
CPUs (and GPUs): the copies would get slightly different vectors, equal texts would
not score equal, and ties would rank by rounding noise instead of input order. So
a request's inputs are reduced to their distinct values, those are computed, and
every input gets its value's result: bit-identical for equal inputs, and the
duplicated work disappears.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


@dataclass(frozen=True)
class Distinct(Generic[K]):
    values: list[K]
    """Each distinct input once, in order of first appearance."""
    positions: list[int]
    """For every input, the index of its value in `values`."""
    first: list[int]
    """For every value, the index of the input where it first appears."""

    def fan_out(self, results: Sequence[R]) -> list[R]:
        """One result per input, from one result per distinct value."""
        return [results[row] for row in self.positions]


def distinct(inputs: Sequence[K]) -> Distinct[K]:
    index: dict[K, int] = {}
    first: list[int] = []
    positions: list[int] = []
    for i, value in enumerate(inputs):
        row = index.get(value)
        if row is None:
            row = index[value] = len(first)
            first.append(i)
        positions.append(row)
    return Distinct(values=[inputs[i] for i in first], positions=positions, first=first)
