"""Model-aware routing (mcp_bridge/pool/routing.py) with `httpx.MockTransport` hosts: a call that names a
model goes to hosts that have it loaded, then to those that may load it, never to the others; a host
lacking one model (or a default that failed to load) stays healthy for the rest. A host not described yet
that refuses a model moves the call on and is left out for that model; a model matches every name its host
publishes for it."""

from __future__ import annotations

import collections

import httpx
import pytest

from gpu_protocol.capabilities import TaskModels, same_model
from gpu_protocol.status import InfoResponse
from mcp_bridge.pool.errors import HostRejected, NoHostAvailable, PoolError
from mcp_bridge.pool.pool import HostPool
from mcp_bridge.pool.routing import Need, tier
from mcp_bridge.pool.versioning import learn_from_info
from tests.unit.test_pool import Handler, make_pool, ok, post_embed, read_json, refuse, status

BUNDLED = "all-MiniLM-L6-v2"
SECOND = "mini-second"
INFO = {"device": "cpu", "device_name": "cpu", "torch_version": "2", "default_models": {}, "allowed_models": "*",
        "models": [], "limits": {}, "protocol_version": 2,
        "capabilities": {"embed": {"default": BUNDLED, "loaded": [BUNDLED], "allowed": [BUNDLED, SECOND]}}}


def models(default: str | None = BUNDLED, loaded: tuple[str, ...] = (BUNDLED,), allowed: tuple[str, ...] = (BUNDLED,),
           failed: tuple[str, ...] = ()) -> TaskModels:
    return TaskModels(default=default, loaded=list(loaded), allowed=list(allowed), failed=list(failed))


def describe(pool: HostPool, name: str, **tasks: TaskModels) -> None:
    host = pool.host(name)
    host.described.version = 2
    host.described.capabilities = tasks


def three_hosts(handlers: dict[str, Handler] | None = None) -> HostPool:
    """a has the second model loaded, b may load it, c has only the bundled one."""
    pool = make_pool(handlers or {"a": ok, "b": ok, "c": ok}, loadBalancing="round-robin")
    describe(pool, "a", embed=models(loaded=(BUNDLED, SECOND), allowed=(BUNDLED, SECOND)),
             rerank=models(default=None, loaded=(), allowed=()))
    describe(pool, "b", embed=models(allowed=(BUNDLED, SECOND)))
    describe(pool, "c", embed=models())
    return pool


async def call(pool: HostPool, model: str | None = None, task: str = "embed", deadline: float = 30.0) -> str:
    _, host = await pool.request(task, post_embed, read_json,  # type: ignore[arg-type]
                                 deadline=pool.clock() + deadline, model=model)
    return host.name


def test_names_of_one_model_compare_as_the_service_does() -> None:
    assert same_model("sentence-transformers/all-MiniLM-L6-v2", "ALL-MiniLM-L6-v2")
    assert not same_model("all-MiniLM-L6-v2", "all-MiniLM-L12-v2")
    bert = TaskModels(default=BUNDLED, loaded=[f"{BUNDLED}@L6"], allowed=[BUNDLED])
    assert bert.has_loaded(BUNDLED) and bert.serves("sentence-transformers/all-MiniLM-L6-v2")
    assert not models(failed=(BUNDLED,)).serves(BUNDLED), "a default that failed to load is not served"


@pytest.mark.anyio
async def test_a_named_model_goes_to_the_host_that_has_it_loaded() -> None:
    pool = three_hosts()
    assert [await call(pool, SECOND) for _ in range(30)] == ["a"] * 30
    assert pool.seen["b"] == pool.seen["c"] == 0


@pytest.mark.anyio
async def test_then_to_a_host_that_may_load_it_never_to_one_that_cannot() -> None:
    pool = three_hosts({"a": refuse, "b": ok, "c": ok})
    answered = collections.Counter([await call(pool, SECOND) for _ in range(20)])
    assert answered == {"b": 20}
    assert pool.seen["c"] == 0
    assert pool.host("c").record.failed == 0 and pool.host("c").record.last_error is None


@pytest.mark.anyio
async def test_calls_naming_no_model_use_every_host() -> None:
    pool = three_hosts()
    assert {await call(pool) for _ in range(30)} == {"a", "b", "c"}


@pytest.mark.anyio
async def test_a_model_no_host_serves_fails_at_once_saying_what_each_host_has() -> None:
    pool = three_hosts()
    with pytest.raises(NoHostAvailable) as err:
        await call(pool, "intfloat/e5-small-v2")
    message = str(err.value)
    assert "no host serves embed with model 'intfloat/e5-small-v2'" in message
    for name in ("a:", "b:", "c:"):
        assert name in message
    assert f"loaded {BUNDLED}, {SECOND}" in message and "ALLOWED_MODELS" in message
    assert sum(pool.seen.values()) == 0, "nothing was sent"


@pytest.mark.anyio
async def test_when_the_only_host_with_the_model_is_down_the_error_names_the_others_models() -> None:
    pool = make_pool({"a": refuse, "c": ok}, loadBalancing="round-robin")
    describe(pool, "a", embed=models(loaded=(BUNDLED, SECOND), allowed=(BUNDLED, SECOND)))
    describe(pool, "c", embed=models())
    with pytest.raises(PoolError) as err:  # out of retries or of time, whichever comes first
        await call(pool, SECOND, deadline=5.0)
    assert f"model {SECOND!r} is served by a only" in str(err.value)
    assert f"c: default {BUNDLED}" in str(err.value)
    assert pool.seen["c"] == 0 and pool.host("c").record.failed == 0
    assert await call(pool, BUNDLED) == "c", "the bundled model still works on the others"


@pytest.mark.anyio
async def test_a_degraded_host_is_left_out_only_for_its_missing_default() -> None:
    pool = make_pool({"a": ok, "b": ok}, loadBalancing="round-robin")
    describe(pool, "a", embed=models(), rerank=models(default="reranker", loaded=("reranker",), allowed=("reranker",)))
    describe(pool, "b", embed=models(loaded=(), failed=(BUNDLED,)),
             rerank=models(default="reranker", loaded=("reranker",), allowed=("reranker",)))
    assert {await call(pool) for _ in range(10)} == {"a"}, "embed without a model: b's default failed"
    assert {await call(pool, task="rerank") for _ in range(10)} == {"a", "b"}, "b still reranks"
    assert tier(pool.host("b"), Need("embed", SECOND)) is None


@pytest.mark.anyio
async def test_a_host_that_fails_to_load_a_model_is_not_held_against_it() -> None:
    pool = make_pool({"a": ok, "b": status(500)}, loadBalancing="round-robin", failureThreshold=2)
    describe(pool, "a", embed=models(allowed=(BUNDLED, SECOND)))
    describe(pool, "b", embed=models(allowed=(BUNDLED, SECOND)))
    for _ in range(10):
        assert await call(pool, SECOND) == "a"
    b = pool.host("b")
    assert b.record.ejections == 0 and b.record.consecutive_failures == 0 and b.state(pool.clock()) == "healthy"
    assert b.record.last_error is not None and "500" in b.record.last_error

    pool = make_pool({"a": status(500), "b": status(500)}, loadBalancing="round-robin")
    describe(pool, "a", embed=models(allowed=(BUNDLED, SECOND)))
    describe(pool, "b", embed=models(allowed=(BUNDLED, SECOND)))
    with pytest.raises(NoHostAvailable, match="no host that serves embed with this model could load it: a: HTTP 500"):
        await call(pool, SECOND)
    assert pool.seen == {"a": 1, "b": 1}, "each tried once, the call ends when none is left"


@pytest.mark.anyio
async def test_a_500_for_a_loaded_model_still_counts() -> None:
    pool = make_pool({"a": ok, "b": status(500)}, loadBalancing="round-robin", failureThreshold=2)
    describe(pool, "a", embed=models())
    describe(pool, "b", embed=models())
    for _ in range(6):
        assert await call(pool, BUNDLED) == "a"
    assert pool.host("b").record.ejections >= 1


@pytest.mark.anyio
async def test_openai_hosts_serve_their_configured_model_and_unconfigured_ones_any_name_last() -> None:
    pool = make_pool({"fixed": ok, "open": ok, "ours": ok}, loadBalancing="round-robin",
                     host_fixed={"type": "openai", "model": "bge-small"}, host_open={"type": "openai"})
    describe(pool, "ours", embed=models())
    assert {await call(pool, "bge-small") for _ in range(10)} == {"fixed"}
    assert {await call(pool, BUNDLED) for _ in range(10)} == {"ours"}
    assert {await call(pool, "something-else") for _ in range(10)} == {"open"}
    assert {await call(pool) for _ in range(30)} == {"fixed", "open", "ours"}


@pytest.mark.anyio
async def test_hosts_not_described_yet_are_tried_after_described_ones() -> None:
    pool = make_pool({"new": ok, "known": ok}, loadBalancing="round-robin")
    describe(pool, "known", embed=models(allowed=(BUNDLED, SECOND)))
    assert {await call(pool, SECOND) for _ in range(10)} == {"known"}
    pool.host("known").described.capabilities = {"embed": models()}
    assert {await call(pool, SECOND) for _ in range(10)} == {"new"}, "an undescribed host may have it"


def test_the_pool_view_shows_each_hosts_models_per_task() -> None:
    pool = make_pool({"a": ok, "tei": ok}, host_tei={"type": "tei", "model": "bge-small"})
    describe(pool, "a", embed=models(loaded=(BUNDLED, SECOND), allowed=(BUNDLED, SECOND)))
    rows = {h.name: h.models for h in pool.snapshot().hosts}
    (embed,) = rows["a"]
    assert (embed.task, embed.default, embed.loaded, embed.source) == ("embed", BUNDLED, [BUNDLED, SECOND], "host")
    (tei,) = rows["tei"]
    assert (tei.task, tei.default, tei.allowed, tei.source) == ("embed", "bge-small", ["bge-small"], "configured")


def not_allowed(request: httpx.Request) -> httpx.Response:
    return httpx.Response(403, json={"detail": f"model {SECOND!r} is not in the default allowlist"})


@pytest.mark.anyio
async def test_before_hosts_describe_themselves_a_refusal_moves_the_call_on_and_is_learnt() -> None:
    pool = make_pool({"a": ok, "b": not_allowed, "c": not_allowed}, loadBalancing="round-robin")
    assert [await call(pool, SECOND) for _ in range(20)] == ["a"] * 20
    assert pool.seen["b"] == pool.seen["c"] == 1, "each refused once, then left out"
    for name in ("b", "c"):
        host = pool.host(name)
        assert tier(host, Need("embed", SECOND)) is None and tier(host, Need("embed", BUNDLED)) == "unknown"
        assert tier(host, Need("rerank", SECOND)) == "unknown", "learnt for that task only"
        assert host.record.failed == 0 and host.state(pool.clock()) == "healthy"
    learn_from_info(pool.host("b"), InfoResponse.model_validate(INFO))
    assert tier(pool.host("b"), Need("embed", SECOND)) == "allowed", "its next /info replaces what was learnt"


@pytest.mark.anyio
async def test_when_every_host_refuses_the_model_the_refusal_is_the_answer() -> None:
    pool = make_pool({"b": not_allowed, "c": not_allowed}, loadBalancing="round-robin")
    with pytest.raises(HostRejected) as err:
        await call(pool, SECOND)
    assert err.value.status == 403 and pool.seen == {"b": 1, "c": 1}
    with pytest.raises(NoHostAvailable, match=f"b: not described yet .*; refused {SECOND}"):
        await call(pool, SECOND)
    assert pool.seen == {"b": 1, "c": 1}, "known refusals: nothing sent"
    with pytest.raises(HostRejected):
        await pool.request("embed", post_embed, read_json, deadline=pool.clock() + 5, pin="b")  # type: ignore[arg-type]


def test_a_model_matches_every_name_its_host_publishes_for_it() -> None:
    path = "/models/whisper-tiny.en"
    published = TaskModels(default=path, loaded=[path], allowed=["tiny.en"], names={path: ["whisper-tiny.en"]})
    assert published.has_loaded("whisper-tiny.en") and published.serves("WHISPER-tiny.en")
    assert not published.serves("whisper-small")
    older = TaskModels.model_validate({"default": path, "loaded": [path], "allowed": ["tiny.en"]})
    assert older.names == {} and older.serves(path) and not older.serves("whisper-tiny.en"), "as before"


@pytest.mark.anyio
async def test_routing_matches_a_default_set_by_path_by_its_folder_name() -> None:
    pool = make_pool({"a": ok, "b": ok}, loadBalancing="round-robin")
    path = "/models/whisper-tiny.en"
    describe(pool, "a", transcribe=TaskModels(default=path, loaded=[path], names={path: ["whisper-tiny.en"]}))
    describe(pool, "b", transcribe=TaskModels(default="tiny.en", loaded=["tiny.en"]))
    assert {await call(pool, "whisper-tiny.en", task="transcribe") for _ in range(6)} == {"a"}
