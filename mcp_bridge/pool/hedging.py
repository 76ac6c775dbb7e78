"""Hedged requests: when a host is slower than its own p95, a copy goes to a second host.

The first good answer wins and the other request is cancelled (its connection is closed,
and the pool tells the host to drop the work), so a hedge costs at most one extra request
and only on the slow tail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from mcp_bridge.pool.errors import Failure, HostFailed
from mcp_bridge.pool.hosts import Host


async def send_hedged(
    host: Host,
    send: Callable[[Host], Awaitable[httpx.Response]],
    backup: Callable[[], Host | None],
    account: Callable[[Host, Failure], None],
) -> tuple[httpx.Response, Host]:
    """Send to `host`; past its p95 ask `backup()` for a second host and send there too.

    Returns the first answer and who gave it. A copy that failed is accounted here (`account`), except
    the last when both fail: that one is raised as HostFailed for the caller to account."""
    primary: asyncio.Future[httpx.Response] = asyncio.ensure_future(send(host))
    owners: dict[asyncio.Future[httpx.Response], Host] = {primary: host}
    try:
        if await _past_p95(host, primary):
            second = backup()
            if second is not None:
                owners[asyncio.ensure_future(send(second))] = second
        pending: set[Any] = set(owners)
        failure: HostFailed | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                if exc is None:
                    if failure is not None and failure.host is not None:
                        account(failure.host, failure.failure)  # the other copy failed before this one won
                    return future.result(), owners[future]
                if not isinstance(exc, HostFailed):
                    raise exc
                exc.host = owners[future]
                if failure is not None and failure.host is not None:
                    account(failure.host, failure.failure)
                failure = exc
        assert failure is not None
        raise failure
    finally:
        for future in owners:
            future.cancel()
        await asyncio.gather(*owners, return_exceptions=True)


LOOK_AGAIN_S = 1.0
"""While a host has too few latencies for a p95 (a bridge just started), how often to look again."""


async def _past_p95(host: Host, primary: asyncio.Future[httpx.Response]) -> bool:
    """Wait until `primary` is done (False) or has run past its host's p95 (True). A host without a p95 yet
    gets one as other requests finish: a request sent before that is hedged once it is late by it too."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not primary.done():
        p95 = host.p95_latency()
        left = LOOK_AGAIN_S if p95 is None else p95 - (loop.time() - started)
        if left <= 0:
            return True
        await asyncio.wait({primary}, timeout=left)
    return False
