"""Cutting a round of waiting items into batches (gpu_service/scheduling/batch_plan.py): the cheapest plan,
within the limits, and what the scheduler does with it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_service.scheduling.batch_plan import cut_sorted
from tests.unit.test_batching import echo_run, make_scheduler


def work(batch: list[int], padded: bool) -> int:
    return len(batch) * batch[-1] if padded else sum(batch)


def plan_cost(costs: list[int], sizes: list[int], overhead: int, padded: bool = True) -> int:
    total, start = 0, 0
    for size in sizes:
        total += overhead + work(costs[start:start + size], padded)
        start += size
    return total


def allowed(costs: list[int], sizes: list[int], max_size: int, max_tokens: int, padded: bool = True) -> bool:
    start = 0
    for size in sizes:
        batch = costs[start:start + size]
        if size > max_size or (size > 1 and work(batch, padded) > max_tokens):
            return False
        start += size
    return start == len(costs)


def every_plan(n: int):
    """Every way to cut n sorted items into consecutive batches."""
    for cuts in itertools.product((False, True), repeat=n - 1):
        sizes, size = [], 1
        for cut in cuts:
            if cut:
                sizes.append(size)
                size = 0
            size += 1
        yield [*sizes, size]


@given(st.lists(st.integers(1, 120), min_size=1, max_size=9), st.integers(1, 6), st.integers(1, 600),
       st.integers(0, 300), st.booleans())
def test_the_plan_is_the_cheapest_allowed_one(costs: list[int], max_size: int, max_tokens: int,
                                              overhead: int, padded: bool) -> None:
    costs.sort()
    sizes = cut_sorted(costs, max_size=max_size, max_tokens=max_tokens, overhead=overhead, padded=padded)
    assert allowed(costs, sizes, max_size, max_tokens, padded), sizes
    cheapest = min(plan_cost(costs, plan, overhead, padded) for plan in every_plan(len(costs))
                   if allowed(costs, plan, max_size, max_tokens, padded))
    assert plan_cost(costs, sizes, overhead, padded) == cheapest


def test_short_and_long_items_get_their_own_batches_where_padding_would_cost_more() -> None:
    costs = [4] * 8 + [60] * 8
    # On a CPU (a pass costs ~64 tokens' worth): padding 8 short items to 60 would waste 448 tokens.
    assert cut_sorted(costs, max_size=64, max_tokens=2048, overhead=64) == [8, 8]
    # On a GPU a pass costs thousands of tokens' worth: one batch is cheaper.
    assert cut_sorted(costs, max_size=256, max_tokens=16_384, overhead=2048) == [16]


def test_limits_hold_and_an_item_over_the_budget_runs_alone() -> None:
    assert cut_sorted([10] * 10, max_size=4, max_tokens=10_000, overhead=1000) == [2, 4, 4]
    assert cut_sorted([10] * 10, max_size=64, max_tokens=30, overhead=1000) == [1, 3, 3, 3]
    assert cut_sorted([5, 500], max_size=64, max_tokens=100, overhead=0) == [1, 1]
    assert cut_sorted([], max_size=8, max_tokens=100, overhead=10) == []
    with pytest.raises(ValueError, match="sorted"):
        cut_sorted([3, 1], max_size=8, max_tokens=100, overhead=10)


@pytest.mark.anyio
async def test_the_scheduler_batches_by_the_plan() -> None:
    """One request of short and long texts, interleaved: the short ones run together, apart from
    the long ones, whatever their order in the request."""
    batches: list[list[str]] = []
    sched = make_scheduler(echo_run(batches), max_batch_tokens=4096, max_batch_size=64, overhead_tokens=64)
    texts = [("s" if i % 2 else "L" * 59) + str(i % 10) for i in range(16)]
    got = await sched.submit(texts, [len(t) for t in texts])
    assert got == [t.upper() for t in texts]
    assert sorted(len({len(t) for t in batch}) for batch in batches) == [1, 1], batches
    await sched.close()

    batches.clear()
    sched = make_scheduler(echo_run(batches), max_batch_tokens=4096, max_batch_size=64, overhead_tokens=5000)
    await sched.submit(texts, [len(t) for t in texts])
    assert [len(batch) for batch in batches] == [16]
    await sched.close()


def test_an_engine_that_does_not_pad_gets_full_batches() -> None:
    """Without padding a batch costs its real tokens, so the only saving is passes: fill them."""
    costs = [4] * 8 + [60] * 8
    assert cut_sorted(costs, max_size=64, max_tokens=2048, overhead=64, padded=False) == [16]
    sizes = cut_sorted(costs, max_size=64, max_tokens=260, overhead=64, padded=False)
    assert len(sizes) == 3 and allowed(costs, sizes, 64, 260, padded=False), sizes  # 512 tokens: 3 at least
    assert cut_sorted([300, 400], max_size=64, max_tokens=100, overhead=0, padded=False) == [1, 1]
