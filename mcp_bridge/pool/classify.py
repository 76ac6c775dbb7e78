"""What one attempt came to, decided in one place (after Finagle's response classifier): a pure function of
the host's answer, or of the exception that took its place, to the outcome the pool's retry loop acts on.

Outcomes:
- an answer under 400: answered (`None`); the protocol's exchange then reads it, and a malformed answer
  (`BadResponse`) is a `host` failure that is not retried on that host in the same call (it would answer
  the same), and when no host is left the call fails at once;
- connect errors, timeouts and 5xx: a `host` failure, counted against the host (ejection after
  `failureThreshold` in a row) and retried on another host;
- a 500 from a gpu-service host that said it may load the call's model but had not (loading it failed):
  a `model` failure, that model's problem and not the host's: the host is out of the call, not held
  against it;
- 429/503 with Retry-After: `busy`, the host cools down for that long and the call is retried elsewhere (a 429
  with `X-GPU-Too-Late`: that host would not finish it within the call's wait, so it is not waited for in this
  call, and not cooled down either, since a call with more time left may fit); so
  is a 504 with Retry-After (a gpu-service that could not finish the work within the wait the bridge told it,
  `X-GPU-Timeout`: it is behind, not broken, and ejecting it would pile its load on the others);
- a `cluster` host (a proxy such as Ray Serve's in front of many replicas) may be tried again in the
  same round, and its 408 (the proxy's replica queue timed out) is retried like a 5xx; from any other
  host a 408 is the caller's problem, like the 4xx below;
- a 403 for a call that names a model is that host's "not allowed here" (`HostRejected.refused_model`):
  the call moves on to another host, and routing leaves the host out of calls naming that model until
  its next /info; when every host refused, the last refusal is the call's answer;
- 400/401/403/404/413/422 are otherwise the caller's problem (`HostRejected`): never retried, never held
  against the host, reported with the host's name and its reason.
A host whose protocol version cannot take the request is passed over before anything is sent
(out_for_call.py), and any other exception from building a request or reading an answer is a bug in the
bridge: it propagates as such and is never held against a host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from gpu_protocol.routes import TOO_LATE_HEADER
from mcp_bridge.pool.errors import Failure, HostRejected
from mcp_bridge.pool.routing import Need, tier
from mcp_bridge.protocols.answers import describe_transport_error, error_detail

if TYPE_CHECKING:
    from mcp_bridge.pool.hosts import Host

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
RETRYABLE_FROM_CLUSTER = RETRYABLE_STATUS | {408}
"""Ray Serve's proxy answers 408 when a request waited too long for a replica: another try may land on a free one."""
MAX_RETRY_AFTER_S = 30.0


def retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds, within [0, MAX_RETRY_AFTER_S]; None when absent or unreadable."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, min(float(raw), MAX_RETRY_AFTER_S))
    except ValueError:
        return None


def classify_answer(response: httpx.Response, host: Host, need: Need) -> Failure | HostRejected | None:
    """`host`'s answer to a call for `need`: None when it answered, else the failure or refusal it is."""
    status = response.status_code
    if status < 400:
        return None
    detail = error_detail(response)
    if status not in (RETRYABLE_FROM_CLUSTER if host.cluster else RETRYABLE_STATUS):
        return HostRejected(host.name, status, detail, refused_model=status == 403 and need.model is not None)
    wait = retry_after(response)
    message = f"HTTP {status}: {detail}"
    if status in (429, 503, 504) and wait is not None:
        return Failure(message, wait, kind="busy", status=status, too_late=TOO_LATE_HEADER in response.headers)
    if status == 500 and tier(host, need) == "allowed":  # it had to load the model and could not
        return Failure(message, wait, kind="model", status=status)
    return Failure(message, wait, status=status)


def classify_error(exc: httpx.TransportError, timeout: float) -> Failure:
    """No answer from the host (a timeout after `timeout` seconds, a refused or dropped connection)."""
    if isinstance(exc, httpx.TimeoutException):
        return Failure(f"timed out after {timeout:.1f}s")
    return Failure(describe_transport_error(exc))
