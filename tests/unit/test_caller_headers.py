"""Who a /v1 call is for: a `clients` entry's name stands; the single --auth-token (or no token) names itself
by X-GPU-Tenant / X-GPU-Priority, within the class it may use."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from mcp_bridge.http_api.caller_headers import caller_from_headers
from mcp_bridge.http_api.errors import ApiError
from mcp_bridge.pool.caller import Caller, current_caller


def _request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/embeddings", "headers": raw})


def _as(caller: Caller, request: Request) -> Caller:
    token = current_caller.set(caller)
    try:
        return caller_from_headers(request)
    finally:
        current_caller.reset(token)


def test_the_auth_token_caller_names_its_tenant_even_when_it_asked_a_class() -> None:
    request = _request(X_GPU_Tenant="indexer", X_GPU_Priority="batch")
    # the --auth-token client: no name, every right; its X-GPU-Priority was read at the door
    assert _as(Caller(tenant="", asked="batch"), request) == Caller(tenant="indexer", asked="batch")
    assert _as(Caller(), request) == Caller(tenant="indexer", asked="batch")


def test_a_clients_entry_keeps_its_own_name_and_class() -> None:
    client = Caller(tenant="memory", highest="batch")
    assert _as(client, _request(X_GPU_Tenant="someone-else", X_GPU_Priority="interactive")) is client


def test_a_bad_tenant_is_a_400_naming_the_header() -> None:
    with pytest.raises(ApiError) as refused:
        _as(Caller(), _request(X_GPU_Tenant="x" * 65))
    assert refused.value.status == 400 and "X-GPU-Tenant" in refused.value.message
