"""Cancel a request's work when its HTTP client goes away: one helper for the service and the bridge.

Depends on anyio only. The ASGI server tells an app that the client left by the next message
on `receive` (`http.disconnect`); a handler that has read its body has nothing else to wait for
there, so one blocking receive per request watches for it (polling costs far more).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import anyio

T = TypeVar("T")

Receive = Callable[[], Awaitable[Mapping[str, Any]]]
"""The ASGI `receive` callable of the request being served."""


class WorkCancelled(Exception):
    """The work was cancelled before it finished: the client disconnected, or `scope` was cancelled
    (e.g. by `POST /cancel/{id}`). Nobody waits for an answer; the caller maps it to a 499."""


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T], scope: anyio.CancelScope | None = None) -> T:
    """Await `work`, cancelling it when the client disconnects (raising `WorkCancelled`).

    `scope`: the cancel scope the work runs in, for a caller that also cancels it another way
    (cancelling it raises `WorkCancelled` too). A cancellation of the caller itself (a shutdown)
    propagates as usual, and `work`'s own exceptions propagate unchanged."""
    scope = scope or anyio.CancelScope()
    failure: Exception | None = None
    result: T | None = None

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async with anyio.create_task_group() as watchers:
        watchers.start_soon(watch)
        try:
            with scope:
                result = await work
        except Exception as exc:  # noqa: BLE001 - raised again below, outside the task group
            failure = exc
        finally:
            watchers.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if scope.cancelled_caught:
        raise WorkCancelled("the client cancelled this request")
    return cast(T, result)  # set: neither failed nor cancelled


__all__ = ["Receive", "WorkCancelled", "cancel_on_disconnect"]
