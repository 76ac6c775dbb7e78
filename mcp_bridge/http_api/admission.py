"""A `/v1` call through the client's scope and quota: the model it may run, or the refusal in OpenAI's shape
(403 outside its scope, 429 with Retry-After over its quota, 413 for a call larger than a minute's items)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import Request

from mcp_bridge.access.gate import Access
from mcp_bridge.access.identity import client_of
from mcp_bridge.access.quota import OverQuota, TooLarge
from mcp_bridge.access.scopes import OutOfScope
from mcp_bridge.http_api.errors import ApiError
from mcp_bridge.http_api.identity import note_remaining


@contextmanager
def admitted(request: Request, access: Access | None, tool: str, items: int, model: str | None) -> Iterator[str | None]:
    """Inside: the call runs, counted in the client's place in flight; yields the model it runs (`model`, or
    the first the client may use when it named none). No client (no tokens): everything, unlimited."""
    client = client_of(request.scope)
    if access is None or client is None:
        yield model
        return
    try:
        admission = access.admit(client, tool, items, model)
    except OutOfScope as exc:
        raise ApiError(403, str(exc), param="model", code="out_of_scope") from None
    except TooLarge as exc:
        raise ApiError(413, str(exc), code="over_items_quota") from None
    except OverQuota as exc:
        note_remaining(request.scope, exc.remaining)
        raise ApiError(429, str(exc), code="over_quota", retry_after=exc.retry_after) from None
    note_remaining(request.scope, admission.remaining)
    with admission:
        yield admission.model
