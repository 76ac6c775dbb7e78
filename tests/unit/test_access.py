"""The bridge's clients, pure parts: the config's `clients`, tokens to clients, scopes, the items rule, and
the quotas on a fake clock (no sleeping)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_bridge.access.gate import Access
from mcp_bridge.access.identity import Client, resolve_clients
from mcp_bridge.access.items import tool_items
from mcp_bridge.access.quota import OverQuota, Quota, TooLarge
from mcp_bridge.access.scopes import OutOfScope, allowed_tools, model_for
from mcp_bridge.client_rights import ClientConfig
from mcp_bridge.config import ConfigError, parse_config, redactor

SECRET = "tok-0123456789-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(**rights: Any) -> Client:
    config = ClientConfig(name=rights.pop("name", "c"), token=SECRET, **rights)
    return Client(config.name, SECRET, config)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(("clients", "named"), [
    ([{"name": "a", "token": "token-aaaa"}, {"name": "a", "token": "token-bbbb"}], "names must be unique, repeated: a"),
    ([{"name": "a", "token": SECRET}, {"name": "b", "token": SECRET}], "the same token is given to a, b"),
    ([{"name": "a", "token": "token-aaaa", "tools": ["gpu_embed", "gpu_embedd"]}], "unknown tool(s) 'gpu_embedd'"),
    ([{"name": "a"}], "exactly one of token and tokenEnv"),
    ([{"name": "a", "token": "token-aaaa", "tokenEnv": "X"}], "exactly one of token and tokenEnv"),
    ([{"name": "a", "token": "token-aaaa", "priority": "urgent"}], "clients.0.priority"),
    ([{"name": "a", "token": "token-aaaa", "requestsPerMinute": 0}], "clients.0.requestsPerMinute"),
    ([{"name": "a", "token": "token-aaaa", "models": {"embedd": ["m"]}}], "clients.0.models.embedd"),
    ([{"name": "a", "token": "short"}], "clients.0.token"),
])
def test_bad_clients_are_config_errors_that_never_show_a_token(clients: list[dict[str, Any]], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"clients": clients}, "my.json")
    assert named in str(err.value) and "my.json" in str(err.value)
    assert SECRET not in str(err.value)


def test_token_env_is_read_when_serving_and_an_unset_one_names_the_variable() -> None:
    config = parse_config({"clients": [{"name": "indexer", "tokenEnv": "INDEXER_TOKEN", "priority": "batch"}]}, "t")
    (only,) = resolve_clients(config.clients, None, {"INDEXER_TOKEN": SECRET})
    assert only.name == "indexer" and only.token == SECRET and only.priority == "batch"
    with pytest.raises(ConfigError, match="INDEXER_TOKEN, which is not set"):
        resolve_clients(config.clients, None, {})
    with pytest.raises(ConfigError) as err:  # the --auth-token may not be a client's token either
        resolve_clients(config.clients, SECRET, {"INDEXER_TOKEN": SECRET})
    assert "(--auth-token), indexer" in str(err.value) and SECRET not in str(err.value)


def test_the_auth_token_is_one_client_with_every_right_beside_the_configured_ones() -> None:
    config = parse_config({"clients": [{"name": "ci", "token": "ci-token-123", "tools": ["gpu_embed"]}]}, "t")
    access = Access.from_config(config, "the-auth-token", {})
    assert access is not None
    assert access.identify(b"the-auth-token") == Client("", "the-auth-token")
    assert access.identify(b"ci-token-123").name == "ci"  # type: ignore[union-attr]
    assert access.identify(b"ci-token-12") is None and access.identify(None) is None
    assert Access.from_config(parse_config({}, "t"), None, {}) is None, "no tokens: an open bridge, as before"
    assert SECRET not in repr(client()), "a token never appears in a repr"


# --------------------------------------------------------------------------- scopes and items


def test_scopes_name_what_is_allowed() -> None:
    embedder = client(tools=["gpu_embed", "gpu_similarity"], models={"embed": ["m-a", "m-b"]})
    assert allowed_tools(embedder) == ["gpu_health", "gpu_info", "gpu_status", "gpu_embed", "gpu_similarity"]
    access = Access([embedder])
    with pytest.raises(OutOfScope, match="may not use tool gpu_rerank; it may use: gpu_health, gpu_info"):
        access.admit(embedder, "gpu_rerank", 1)
    with pytest.raises(OutOfScope, match="may not use the embed model 'm-c'; it may use: m-a, m-b"):
        access.admit(embedder, "gpu_similarity", 2, "m-c")
    assert model_for(embedder, "gpu_embed", None) == "m-a", "a call naming no model gets the client's first"
    assert model_for(embedder, "gpu_embed", "m-b") == "m-b"
    assert model_for(client(), "gpu_rerank", None) is None, "no list: the pool's default"
    assert access.admit(embedder, "gpu_status", 0).model is None, "the diagnostics are always allowed"
    assert access.snapshot()[0].refused_scope == 2


def test_items_rule() -> None:
    assert tool_items("gpu_embed", {"texts": ["a", "b", "c"]}) == 3
    assert tool_items("gpu_similarity", {"texts": ["a", "b"], "query": "q"}) == 3
    assert tool_items("gpu_similarity", {"texts": ["a", "b"], "texts_b": ["c", "d"]}) == 4
    assert tool_items("gpu_rerank", {"query": "q", "documents": ["a", "b"]}) == 2
    assert tool_items("gpu_bertscore", {"candidates": ["a"], "references": ["b"]}) == 1
    assert tool_items("gpu_transcribe", {"audio_base64": "AAAA"}) == 1
    assert tool_items("gpu_status", {}) == 0 and tool_items("gpu_embed", {"texts": "not a list"}) == 1


# --------------------------------------------------------------------------- quotas


def test_requests_per_minute_refills_evenly_and_says_when_to_retry() -> None:
    clock = FakeClock()
    quota = Quota(60, None, None, clock)
    for left in range(59, -1, -1):
        assert quota.admit(0).requests == left
        quota.release()
    with pytest.raises(OverQuota) as err:
        quota.admit(0)
    assert err.value.retry_after == 1 and err.value.remaining.requests == 0
    assert "requestsPerMinute; retry in 1 s" in str(err.value)
    clock.now += 0.01
    with pytest.raises(OverQuota) as err:
        quota.admit(0)
    assert err.value.retry_after == 1, "never 0: rounded up to a whole second"
    clock.now += 0.99
    assert quota.admit(0).requests == 0, "served after waiting Retry-After"


def test_items_per_minute_retry_after_and_too_large_calls() -> None:
    clock = FakeClock()
    quota = Quota(None, 120, None, clock)  # 2 items a second
    assert quota.admit(100).items == 20
    with pytest.raises(OverQuota) as err:
        quota.admit(30)  # 10 short: 5 s
    assert err.value.retry_after == 5 and err.value.remaining.items == 20
    with pytest.raises(TooLarge, match="121 items, more than the 120 a minute"):
        quota.admit(121)
    clock.now += 5
    assert quota.admit(30).items == 0
    clock.now += 3600
    assert quota.remaining().items == 120, "a bucket holds a minute's worth at most"


def test_max_in_flight_until_a_call_ends() -> None:
    quota = Quota(None, None, 2, FakeClock())
    quota.admit(1)
    quota.admit(1)
    with pytest.raises(OverQuota, match="2 calls of this client are running, its maxInFlight") as err:
        quota.admit(1)
    assert err.value.retry_after == 1
    quota.release()
    quota.admit(1)


def test_one_client_over_quota_never_refuses_another_and_usage_is_counted() -> None:
    clock = FakeClock()
    bulk = client(name="bulk", itemsPerMinute=60, priority="batch")
    agent = client(name="agent", requestsPerMinute=600)
    bulk = Client("bulk", "bulk-token-1", bulk.rights)
    access = Access([bulk, agent], clock)
    with access.admit(bulk, "gpu_embed", 60):
        pass
    with pytest.raises(OverQuota):
        access.admit(bulk, "gpu_embed", 1)
    for _ in range(10):
        with access.admit(agent, "gpu_embed", 8) as admitted:
            assert admitted.remaining.items is None
    rows = {row.tenant: row for row in access.snapshot()}
    assert (rows["bulk"].requests, rows["bulk"].items, rows["bulk"].refused_quota) == (1, 60, 1)
    assert rows["bulk"].priority == "batch" and rows["bulk"].items_left == 0 and rows["bulk"].requests_left is None
    assert (rows["agent"].requests, rows["agent"].items, rows["agent"].refused_quota) == (10, 80, 0)
    assert rows["agent"].requests_left == 590 and rows["agent"].in_flight == 0


def test_errors_hide_client_tokens_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_TOKEN", "env-secret-123")
    config = parse_config({"clients": [{"name": "memory", "tokenEnv": "MEMORY_TOKEN"},
                                       {"name": "eval", "token": "inline-secret-456"}]}, "t")
    redact = redactor(config)
    assert redact("bad token env-secret-123 or inline-secret-456") == "bad token *** or ***"
