"""Waiting in tests without fixed sleeps: poll a condition until it holds or a deadline passes.

A test that sleeps a fixed time and then asserts is slow when the machine is idle and flaky when it
is loaded. These helpers return as soon as the condition holds and fail with the test's own message
(and how long they waited) when it never does, so every wait can still fail.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Message = str | Callable[[], str]
"""What a wait says when it fails; a function is called only then (to show a log as it is at that moment)."""


def _timeout_message(message: Message, timeout: float) -> str:
    return f"{message() if callable(message) else message} (still not true after {timeout:g}s)"


def wait_until(predicate: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.05,
               message: Message = "the condition never held") -> None:
    """Call `predicate` every `interval` seconds until it is truthy; AssertionError after `timeout`.
    `predicate` may raise to end the wait at once (a process it waits on has died)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_message(message, timeout))
        time.sleep(interval)


def wait_for_value(read: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.05,
                   message: Message = "no value came") -> T:
    """`wait_until` for a value: call `read` until it returns something other than None, and return that."""
    value: T | None = None

    def came() -> bool:
        nonlocal value
        value = read()
        return value is not None

    wait_until(came, timeout=timeout, interval=interval, message=message)
    assert value is not None
    return value


async def wait_until_async(predicate: Callable[[], object | Awaitable[object]], *, timeout: float = 10.0,
                           interval: float = 0.02, message: Message = "the condition never held") -> None:
    """`wait_until` for async tests: sleeps without blocking the event loop (the code under test runs
    meanwhile), and `predicate` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_message(message, timeout))
        await asyncio.sleep(interval)


async def run_ready_tasks(turns: int = 20) -> None:
    """Let every task that is ready on this event loop take `turns` steps, without waiting for time to
    pass: before asserting that something in-process has NOT happened (no poll can show an absence)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def unchanged_for(read: Callable[[], object], quiet: float) -> Callable[[], bool]:
    """A predicate for `wait_until`: true once `read()` has given the same value for `quiet` seconds
    (for "work stopped": the count of batches a host has run no longer grows)."""
    last, since = read(), time.monotonic()

    def settled() -> bool:
        nonlocal last, since
        if (now := read()) != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= quiet

    return settled
