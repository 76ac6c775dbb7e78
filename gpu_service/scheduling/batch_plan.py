"""Where to cut a round of waiting items into batches.

A batch costs its padded tokens (count x longest, since every row is padded to the longest)
plus a fixed overhead per forward pass (kernel launches, Python, the attention mask). Given
items sorted by token count, `cut_sorted` chooses the cuts that minimise the total, within
the batch limits:

- one big batch of mixed lengths wastes compute on padding: 64 texts of 5 to 90 tokens padded
  to 90 cost about twice their real tokens;
- many tiny batches pay the overhead again and again.

Measured on a 2-vCPU x86 machine (all-MiniLM-L6-v2, 2 torch threads): a forward pass costs about
7 ms + 0.14 ms per padded token, so the overhead is worth about 50 tokens there, and batches of
a few hundred padded tokens run as efficiently per token as batches of thousands. On a GPU the
per-token cost is tiny next to a forward pass's fixed cost, so the overhead is worth thousands
of tokens and a round is cut only where padding would be large.

The search is exact (dynamic programming over the sorted items) and linear in the round's
size times the batch size, vectorised with numpy, so a round of 1,024 items plans in a few ms.

An engine that does not pad (a BERT encoder, see unpadded.py) pays only for real tokens, so its
batches are simply filled up to the limits: the fewer passes, the less overhead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CPU_OVERHEAD_TOKENS = 64
"""A forward pass's fixed cost on a CPU, in padded tokens' worth of compute (measured ~50)."""

ACCELERATOR_OVERHEAD_TOKENS = 2048
"""The same on a GPU: a pass over a few thousand tokens costs little more than one over a few
(an estimate; `GPU_BATCH_OVERHEAD_TOKENS` sets it)."""


def cut_sorted(costs: Sequence[int], *, max_size: int, max_tokens: int, overhead: int,
               padded: bool = True) -> list[int]:
    """The sizes of consecutive batches for items whose token counts `costs` are sorted ascending.

    Minimises the sum over batches of `overhead + work`, where a batch's work is `count x longest`
    (padded), or the sum of its tokens for an engine that does not pad (`padded=False`, see
    unpadded.py: then only the overhead is saved, by filling batches), with every batch holding at
    most `max_size` items and its work within `max_tokens` (a single item over the budget still
    gets a batch of its own). Between plans of equal cost the one whose later batches are
    bigger wins, so the plan depends only on the costs."""
    n = len(costs)
    if n == 0:
        return []
    lengths = np.asarray(costs, dtype=np.int64)
    if np.any(lengths[1:] < lengths[:-1]):
        raise ValueError("costs must be sorted ascending")
    prefix = np.concatenate(([0], np.cumsum(lengths)))
    best = np.zeros(n + 1, dtype=np.int64)  # best[j]: the cheapest plan for the first j items
    start = np.zeros(n + 1, dtype=np.int64)  # where the last batch of that plan starts
    for j in range(1, n + 1):
        first = max(0, j - max_size)
        counts = j - np.arange(first, j)  # batch sizes if the last batch starts at first..j-1
        work = counts * lengths[j - 1] if padded else prefix[j] - prefix[first:j]
        totals = best[first:j] + overhead + work
        totals[(work > max_tokens) & (counts > 1)] = np.iinfo(np.int64).max  # over the budget
        pick = int(np.argmin(totals))  # the first minimum: the biggest last batch
        best[j] = totals[pick]
        start[j] = first + pick
    sizes: list[int] = []
    j = n
    while j > 0:
        sizes.append(j - int(start[j]))
        j = int(start[j])
    return sizes[::-1]
