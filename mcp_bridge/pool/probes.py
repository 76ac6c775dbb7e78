"""Asking one host about itself: a health probe, a /status read, an /info read (through the host's protocol).

The health loop and the fleet views (gpu_health, gpu_info, gpu_status) share them, so a host is judged
the same way wherever it is asked.
"""

from __future__ import annotations

import httpx

from gpu_protocol.status import InfoResponse, StatusResponse
from mcp_bridge.pool.errors import PoolError
from mcp_bridge.pool.hosts import Host
from mcp_bridge.pool.versioning import learn_from_info, note_answer
from mcp_bridge.protocols import HealthVerdict, HttpCall
from mcp_bridge.protocols.answers import error_detail

PROBE_TIMEOUT_S = 3.0


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
