"""Asking one host about itself: a health probe, a /status read, an /info read (through the host's protocol),
and asking every host at once (`each`).

The health loop and the fleet views (gpu_health, gpu_info, gpu_status) share them, so a host is judged
the same way wherever it is asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from gpu_protocol.status import InfoResponse, StatusResponse
from mcp_bridge.pool.errors import PoolError
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.versioning import learn_from_info, note_answer
from mcp_bridge.protocols import HealthVerdict, HttpCall, Task
from mcp_bridge.protocols.answers import BadResponse, describe_transport_error, error_detail

PROBE_TIMEOUT_S = 3.0
T = TypeVar("T")


async def each(
    hosts: list[Host], fn: Callable[[Host], Awaitable[T]], timeout: float
) -> list[tuple[Host, T | None, str | None]]:
    """Run `fn` on every one of `hosts` at once, each bounded by `timeout`: (host, result, error).

    A host's failure (no answer, a transport error, a refusal, garbage) is its row's error;
    any other exception is a bug in the bridge and is raised."""

    async def one(host: Host) -> tuple[Host, T | None, str | None]:
        try:
            return host, await asyncio.wait_for(fn(host), timeout), None
        except TimeoutError:
            return host, None, f"no answer within {timeout:.1f}s"
        except httpx.HTTPError as exc:
            return host, None, describe_transport_error(exc)
        except (PoolError, BadResponse) as exc:
            return host, None, str(exc)

    return list(await asyncio.gather(*(one(h) for h in hosts)))


async def _get(host: Host, call: HttpCall, timeout: float) -> httpx.Response:
    response = await host.client.request(call.method, call.path, json=call.json, timeout=timeout)
    note_answer(host, response)
    return response


async def check_health(host: Host, timeout: float) -> HealthVerdict:
    """One health probe, judged by the host's protocol (httpx.HTTPError when it gives no answer); where the
    protocol has other spellings of its health path, each is asked in turn while the answer is 404."""
    for call in host.protocol.health_calls():
        response = await _get(host, call, timeout)
        if response.status_code != 404:
            break
    host.protocol.health_answered(call, response)
    return host.protocol.judge_health(response)


async def read_status(host: Host, timeout: float) -> StatusResponse | None:
    """The host's own /status (queue, jobs, models); None for hosts without one.
    PoolError for an error answer, BadResponse for garbage, httpx.HTTPError for none."""
    call = host.protocol.status_call()
    if call is None:
        return None
    return host.protocol.parse_status(_ok(await _get(host, call, timeout)))


async def read_info(host: Host, timeout: float) -> InfoResponse | None:
    """The host's /info (device, VRAM, models); None for hosts without one (for them, this check is what ends
    the refusals routing learnt, as /info does for the others)."""
    call = host.protocol.info_call()
    if call is None:
        host.described.refused.clear()
        return None
    info = host.protocol.parse_info(_ok(await _get(host, call, timeout)))
    learn_from_info(host, info)
    return info


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise PoolError(f"HTTP {response.status_code}: {error_detail(response)}")
    return response


async def describe_unheard(hosts: list[Host], task: Task, timeout: float) -> None:
    """Read /info now on the versioned hosts that may serve `task` but have not described themselves yet (a
    bridge just started): routing sends a task only some releases have (routing.LISTED_ONLY) only to a host
    whose /info lists it. A host that does not answer stays undescribed (and out of such a call)."""
    unheard = [h for h in hosts if h.protocol.versioned and h.described.capabilities is None
               and h.can_serve(task)]
    if unheard:
        await asyncio.gather(*(read_info(h, timeout) for h in unheard), return_exceptions=True)
