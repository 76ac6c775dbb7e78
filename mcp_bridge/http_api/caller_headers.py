"""Who a `/v1` call is for when the bridge has no `clients` list: the caller names itself by headers.

With one `--auth-token` (or none) every caller holding it has every right, so the bridge takes what the
request says: `X-GPU-Priority` (the class it asks for, as on the service) and `X-GPU-Tenant` (the queue its
shards take turns in at the bridge's slot gate and on the hosts). A tenant is only a fairness key, not a
right: naming oneself differently changes whose turn one waits in, nothing one may do. Where a front end
has set the caller from a `clients` entry's token, that caller stands as it was set; the single `--auth-token`
has every right, so its callers name themselves the same way.
"""

from __future__ import annotations

from starlette.requests import Request

from gpu_protocol.priority import PRIORITY_HEADER, TENANT_HEADER, parse_priority, parse_tenant
from mcp_bridge.http_api.errors import ApiError
from mcp_bridge.pool.caller import Caller, current_caller


def caller_from_headers(request: Request) -> Caller:
    """The caller the headers name, unless a `clients` entry named it (its name is its tenant, which stands).
    The single `--auth-token` (tenant "") names itself like a caller with no token. ApiError 400 on a bad value."""
    known = current_caller.get()
    if known.tenant:
        return known
    try:
        return Caller(tenant=parse_tenant(request.headers.get(TENANT_HEADER)), highest=known.highest,
                      asked=known.asked or parse_priority(request.headers.get(PRIORITY_HEADER)))
    except ValueError as exc:
        raise ApiError(400, str(exc), param=str(exc).split()[0], code="invalid_header") from None
