"""The pool across real processes: several `gpu-service` hosts on loopback, killed, stopped,
restarted and impersonated while an MCP client keeps calling."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mcp import Client
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from tests.support.fake_host import FakeHost
from tests.support.in_process import process_fixture
from tests.support.reliability import record
from tests.support.service_probes import requests_received
from tests.support.services import ServiceProcess, start_together
from tests.support.waiting import wait_until_async


@process_fixture(scope="module")
def trio(service: ServiceProcess) -> Iterator[list[ServiceProcess]]:
    """Three hosts: h0 and h2 are this module's own, which its tests kill, stop and restart; h1 is the shared
    service, which no test here stops (it only answers)."""
    own = start_together([ServiceProcess() for _ in range(2)])
    yield [own[0], service, own[1]]
    for svc in own:
        svc.stop()


def revive(svc: ServiceProcess) -> None:
    """Make sure `svc` runs (a test may have killed or stopped it)."""
    if svc.process is not None and svc.process.poll() is None:
        svc.signal(signal.SIGCONT)
        return
    svc.start()


def pool_config(services: list[ServiceProcess], **extra: Any) -> dict[str, Any]:
    return {"hosts": [{"name": f"h{i}", "url": s.url} for i, s in enumerate(services)], **extra}


def served(client_result: Any) -> dict[str, int]:
    return {h["name"]: h["served"] for h in client_result.structured_content["hosts"]}


async def healthy(request: Request) -> Response:
    return JSONResponse({"status": "ok", "device": "cpu"})


@contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.monotonic()
    yield box
    box.append(time.monotonic() - start)


# --------------------------------------------------------------------------- balancing


@pytest.mark.anyio
async def test_round_robin_spreads_and_least_busy_picks_the_idle_host(trio: list[ServiceProcess]) -> None:
    pair = trio[:2]
    async with Bridge(parse_config(pool_config(pair, loadBalancing="round-robin"), "t")) as bridge:
        async with Client(build_server(bridge)) as c:
            for _ in range(10):
                assert not (await c.call_tool("gpu_embed", {"texts": ["spread me"]})).is_error
            counts = served(await c.call_tool("gpu_status", {}))
    assert counts == {"h0": 5, "h1": 5}

    # h0 works on a pinned job; SIGSTOP then holds it there for as long as the quick calls take, however
    # loaded the machine is (a job sized to outlast them passed the call's deadline on a shared CPU).
    # No health check runs meanwhile (interval 60 s), so only least-busy can keep the calls off h0. The
    # deadline is long enough for the job to outlast the stop however slow the quick calls are on a busy CPU.
    config = pool_config(pair, loadBalancing="least-busy", healthCheckIntervalSeconds=60, timeout=240)
    sent_to_h0 = requests_received(pair[0].url, "/embed")
    async with Bridge(parse_config(config, "t")) as bridge:
        async with Client(build_server(bridge)) as c:
            busy = asyncio.create_task(c.call_tool("gpu_embed", {
                "texts": [f"long busy text {i} " * 30 for i in range(40)], "host": "h0"}))
            await wait_until_async(lambda: bridge.pool.host("h0").record.in_flight > 0,
                                   message="the big job should be running on h0")
            pair[0].signal(signal.SIGSTOP)
            try:
                picks = []
                for _ in range(5):
                    r = await c.call_tool("gpu_embed", {"texts": ["quick"]})
                    assert not r.is_error, r.content[0].text  # a call sent to the stopped h0 times out
                    picks += r.structured_content["hosts"]
                assert bridge.pool.host("h0").record.in_flight > 0, "h0 was busy for every pick"
            finally:
                pair[0].signal(signal.SIGCONT)
            done = await busy
            assert not done.is_error, done.content[0].text
    assert picks == ["h1"] * 5, "while h0 works on a big job, least-busy sends everything to idle h1"
    # Not even a copy that a hedge then beat: h0 received the big job and nothing else.
    assert requests_received(pair[0].url, "/embed") == sent_to_h0 + 1


# --------------------------------------------------------------------------- failures


@pytest.mark.anyio
@pytest.mark.parametrize("calls", [200, pytest.param(500, marks=pytest.mark.soak)])
async def test_kill_one_of_three_under_concurrent_calls(trio: list[ServiceProcess], calls: int) -> None:
    for svc in trio:
        revive(svc)
    texts = [f"call {i}: the quick brown fox {i % 17}" for i in range(calls)]
    async with Bridge(parse_config(pool_config(trio, healthCheckIntervalSeconds=1), "t")) as bridge:
        async with Client(build_server(bridge)) as c:
            reference = (await c.call_tool("gpu_embed", {"texts": texts, "host": "h2"})).structured_content["embeddings"]

            async def one(i: int) -> list[float]:
                r = await c.call_tool("gpu_embed", {"texts": [texts[i]]})
                assert not r.is_error, r.content[0].text
                return r.structured_content["embeddings"][0]

            tasks = [asyncio.create_task(one(i)) for i in range(calls)]
            await wait_until_async(lambda: bridge.pool.host("h0").record.in_flight > 0,
                                   message="calls should be in flight on h0 before it is killed")
            trio[0].kill()  # kill -9 while calls are in flight
            with timer() as took:
                results = await asyncio.gather(*tasks)
    record("fault", f"kill -9 one of 3 hosts under {calls} concurrent tool calls",
           f"0 failed calls; every result matches its own input by content, in order; all done {took[0]:.2f}s "
           "after the kill")
    for i, (got, want) in enumerate(zip(results, reference, strict=True)):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-4, f"result {i} does not match its input"
    revive(trio[0])


@pytest.mark.soak  # ~30-45 s on 2 cores: in `make soak`, to keep `make test` within its 10 minutes
@pytest.mark.anyio
async def test_10000_texts_sharded_over_3_hosts_one_killed_midway(trio: list[ServiceProcess]) -> None:
    for svc in trio:
        revive(svc)
    texts = [f"t{i} " + "abc " * (i % 5) for i in range(10_000)]
    config = pool_config(trio, shardSize=250, timeout=240)
    async with Bridge(parse_config(config, "t"), allow_embedded=False) as bridge:
        progress: list[int] = []

        async def on_progress(done: int, total: int) -> None:
            progress.append(done)
            if done == 8:
                trio[2].kill()

        with timer() as took:
            result = await bridge.gpu.embed(texts, progress=on_progress)
        check = await bridge.gpu.embed([texts[0], texts[5_000], texts[9_999]], host="h0")
    record("fault", "10,000 texts sharded over 3 hosts, one killed mid-way",
           f"all 10,000 vectors back, in order (spot-checked by content), {took[0]:.1f}s")
    assert len(result.embeddings) == 10_000 and progress == list(range(1, 41))
    for got, want in zip([result.embeddings[i] for i in (0, 5_000, 9_999)], check.embeddings, strict=True):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-4
    revive(trio[2])


@pytest.mark.anyio
async def test_hanging_host_does_not_hold_calls_and_returns_after_sigcont(trio: list[ServiceProcess]) -> None:
    for svc in trio:
        revive(svc)
    config = pool_config(trio[:2], timeout=20, healthCheckIntervalSeconds=0.5, healthCheckTimeoutSeconds=0.5,
                         hosts=None)
    config["hosts"] = [{"name": "h0", "url": trio[0].url, "timeout": 1.5}, {"name": "h1", "url": trio[1].url}]
    async with Bridge(parse_config(config, "t")) as bridge:
        trio[0].signal(signal.SIGSTOP)
        try:
            with timer() as took:
                for _ in range(10):
                    r = await bridge.gpu.embed(["while h0 hangs"])
                    assert r.hosts == ["h1"]
            assert took[0] < 20
            await wait_until_async(lambda: bridge.pool.host("h0").state(time.monotonic()) in ("unhealthy", "ejected"),
                                   message="health checks should take the hanging host out")
        finally:
            trio[0].signal(signal.SIGCONT)
        await wait_until_async(lambda: bridge.pool.host("h0").state(time.monotonic()) == "healthy",
                               message="health checks should bring the host back after SIGCONT")
    record("fault", "SIGSTOP one of 2 hosts (hangs, sockets open), then SIGCONT",
           f"10 calls served by the other host in {took[0]:.2f}s (host timeout 1.5 s); back in rotation after SIGCONT")


@pytest.mark.anyio
@pytest.mark.parametrize("garbage", ["not json", "wrong count", "wrong dims", "nan"])
async def test_garbage_answers_are_failures_never_results(service: ServiceProcess, garbage: str) -> None:
    async def embed(request: Request) -> Response:
        body = await request.json()
        n = len(body["texts"])
        if garbage == "not json":
            return Response("<html>proxy error</html>", media_type="application/json")
        vectors = [[0.1] * 384 for _ in range(n)]
        if garbage == "wrong count":
            vectors = vectors[:-1] or [[0.1] * 384, [0.2] * 384]
        elif garbage == "wrong dims":
            vectors = [[0.1] * 17 for _ in range(n)]
        elif garbage == "nan":
            vectors[0][0] = float("nan")
        payload = {"model": "m", "dimensions": 384, "count": len(vectors), "truncated": 0,
                   "embeddings": vectors}
        return Response(json.dumps(payload), media_type="application/json")  # json.dumps writes NaN as NaN

    routes = [Route("/health", healthy), Route("/embed", embed, methods=["POST"])]
    with FakeHost(routes) as fake:
        config = {"hosts": [{"name": "liar", "url": fake.url}, {"name": "honest", "url": service.url}],
                  "loadBalancing": "round-robin"}
        async with Bridge(parse_config(config, "t")) as bridge:
            for _ in range(4):
                r = await bridge.gpu.embed(["one text"], dimensions=None)
                assert r.hosts == ["honest"] and r.dimensions == 384
            assert bridge.pool.host("liar").record.failed >= 1
        assert fake.hits >= 1
    record("fault", f"host answers garbage: {garbage}", "treated as a failed host; all 4 calls answered by the honest host")


@pytest.mark.anyio
async def test_all_hosts_down_then_one_returns(trio: list[ServiceProcess]) -> None:
    svc = trio[2]  # the pool's only host here: killed, then started again
    revive(svc)
    config = {"hosts": [{"name": "only", "url": svc.url}], "timeout": 4, "healthCheckIntervalSeconds": 1}
    async with Bridge(parse_config(config, "t")) as bridge, Client(build_server(bridge)) as c:
        svc.kill()
        with timer() as took:
            r = await c.call_tool("gpu_embed", {"texts": ["anyone?"]})
        assert r.is_error and "only" in r.content[0].text
        assert took[0] <= 4.5, f"the error must arrive within the deadline, took {took[0]:.1f}s"
        svc.start()
        returned = time.monotonic()
        r = await c.call_tool("gpu_embed", {"texts": ["back?"]})
        assert not r.is_error, r.content[0].text
        recovered = time.monotonic() - returned
    record("fault", "all hosts down, then one restarted",
           f"tool error after {took[0]:.2f}s (deadline 4 s); next call served {recovered:.2f}s after the host was up "
           "(health interval 1 s)")


@pytest.mark.anyio
async def test_restarted_host_rejoins_rotation(trio: list[ServiceProcess]) -> None:
    for svc in trio:
        revive(svc)
    pair = trio[:2]
    config = pool_config(pair, loadBalancing="round-robin", healthCheckIntervalSeconds=0.5)
    async with Bridge(parse_config(config, "t")) as bridge, Client(build_server(bridge)) as c:
        pair[0].stop()
        for _ in range(6):  # stopped mid-test: every call still succeeds
            assert not (await c.call_tool("gpu_embed", {"texts": ["x"]})).is_error
        pair[0].start()

        async def h0_healthy() -> bool:
            status = await c.call_tool("gpu_status", {})
            return bool(status.structured_content["hosts"][0]["state"] == "healthy")

        await wait_until_async(h0_healthy, timeout=15, interval=0.25, message="the restarted host should be healthy")
        before = served(await c.call_tool("gpu_status", {}))["h0"]
        for _ in range(6):
            assert not (await c.call_tool("gpu_embed", {"texts": ["y"]})).is_error
        after = served(await c.call_tool("gpu_status", {}))["h0"]
    assert after >= before + 2, "the restarted host serves again"


# --------------------------------------------------------------------------- other backends


@pytest.mark.anyio
async def test_openai_compatible_hosts(service: ServiceProcess) -> None:
    seen_models: list[str] = []

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        seen_models.append(body["model"])
        texts = body["input"]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                for i, t in reversed(list(enumerate(texts)))]  # out of order on purpose: index decides
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "bge-small", "object": "model"}]})

    routes = [Route("/v1/embeddings", embeddings, methods=["POST"]), Route("/v1/models", models)]
    with FakeHost(routes) as fake:
        config = {"hosts": [{"name": "infinity", "url": fake.url, "type": "openai", "model": "bge-small"}]}
        async with Bridge(parse_config(config, "t")) as bridge:
            r = await bridge.gpu.embed(["a", "bbbb"], normalize=False)
            assert r.embeddings == [[1.0, 1.0, 0.0], [4.0, 1.0, 0.0]] and seen_models == ["bge-small"]
            n = await bridge.gpu.embed(["bbbb"])
            assert abs(sum(x * x for x in n.embeddings[0]) - 1) < 1e-9
            from mcp_bridge.pool.errors import NoHostAvailable

            with pytest.raises(NoHostAvailable, match="embeddings only"):
                await bridge.gpu.bertscore(__import__("gpu_protocol.bertscore").bertscore.BertScoreRequest(
                    candidates=["a"], references=["b"]))
    # our own service's OpenAI-compatible endpoint, used as an `openai` host
    config = {"hosts": [{"name": "ours-as-openai", "url": service.url, "type": "openai", "model": "all-MiniLM-L6-v2"}]}
    async with Bridge(parse_config(config, "t")) as bridge:
        via_openai = await bridge.gpu.embed(["same text"])
    async with Bridge(parse_config({"hosts": [{"url": service.url}]}, "t")) as bridge:
        native = await bridge.gpu.embed(["same text"])
    assert max(abs(a - b) for a, b in zip(via_openai.embeddings[0], native.embeddings[0], strict=True)) < 1e-5


# --------------------------------------------------------------------------- similarity on the hosts


@pytest.mark.anyio
async def test_similarity_is_computed_on_the_hosts_and_sharded(trio: list[ServiceProcess]) -> None:
    """A 40-document query with shardSize 8 becomes 5 /similarity calls spread over the hosts;
    each host scores its shard, the bridge ranks the union: the same top-k as one host."""
    for svc in trio:
        revive(svc)
    docs = [f"document {i} about {'cats and kittens' if i % 7 == 3 else 'tax law'}" for i in range(40)]
    args = {"texts": docs, "query": "a story about cats", "top_k": 6}
    before = [requests_received(s.url, "/similarity") for s in trio]
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with Bridge(parse_config(pool_config(trio, shardSize=8, loadBalancing="round-robin"), "t")) as bridge:
        async with Client(build_server(bridge)) as c:
            sharded = await c.call_tool("gpu_similarity", args, progress_callback=on_progress)
            single = await c.call_tool("gpu_similarity", {**args, "host": "h0"})
            pairs = await c.call_tool("gpu_similarity", {"mode": "pairs", "texts": docs[:20], "texts_b": docs[20:]})
    after = [requests_received(s.url, "/similarity") for s in trio]
    assert not sharded.is_error and not single.is_error and not pairs.is_error
    calls = [a - b for a, b in zip(after, before, strict=True)]
    # 5 query shards over the pool, the same 5 pinned to h0, 3 pair shards; a shard a host is late with
    # may run a second (hedged) copy on an idle host (client/dispatch.py), never a third.
    assert 5 + 5 + 3 <= sum(calls) <= 5 + 5 + 3 + 5 + 3 and calls[0] >= 5 and all(n >= 1 for n in calls), calls
    got = sharded.structured_content["matches"]
    assert sorted(m["index"] for m in got) == [3, 10, 17, 24, 31, 38]  # the cat documents, one per shard or two
    # Not ==: the pinned call's five shards share batches on h0, the spread ones do not, and a
    # batch's layout moves the last bits of a score. The same documents, the same scores to 1e-5.
    pinned = single.structured_content["matches"]
    assert sorted(m["index"] for m in pinned) == sorted(m["index"] for m in got)
    pinned_score = {m["index"]: m["score"] for m in pinned}
    assert all(abs(m["score"] - pinned_score[m["index"]]) < 1e-5 for m in got)
    assert [m["score"] for m in got] == sorted((m["score"] for m in got), reverse=True)
    # Every host was sent a shard (`calls` above); the answers may all come from two of them, when a hedged
    # copy on a host that finished early beat a host still warming up to its first request.
    assert set(sharded.structured_content["hosts"]) <= {"h0", "h1", "h2"}
    assert [d for d, _ in progress] == [1, 2, 3, 4, 5] and {t for _, t in progress} == {5}
    assert len(pairs.structured_content["scores"]) == 20


@pytest.mark.anyio
async def test_similarity_on_embedding_only_hosts_matches_our_hosts(service: ServiceProcess) -> None:
    """An openai/tei host has no /similarity: the bridge asks it for vectors and scores them itself,
    with the same answer as our own host."""
    docs = ["a red apple", "a green pear", "the federal budget", "an apple pie"]
    calls = [{"texts": docs, "query": "fruit", "top_k": 4}, {"mode": "matrix", "texts": docs},
             {"mode": "pairs", "texts": docs[:2], "texts_b": docs[2:]}]
    results = {}
    for kind in ("gpu-service", "openai"):
        config = {"hosts": [{"name": kind, "url": service.url, "type": kind, "model": "all-MiniLM-L6-v2"}]}
        async with Bridge(parse_config(config, "t")) as bridge:
            async with Client(build_server(bridge)) as c:
                results[kind] = [(await c.call_tool("gpu_similarity", call)).structured_content for call in calls]
    ours, theirs = results["gpu-service"], results["openai"]
    assert [m["index"] for m in ours[0]["matches"]] == [m["index"] for m in theirs[0]["matches"]]
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(ours[0]["matches"], theirs[0]["matches"], strict=True))
    assert all(abs(x - y) < 1e-5 for r1, r2 in zip(ours[1]["matrix"], theirs[1]["matrix"], strict=True)
               for x, y in zip(r1, r2, strict=True))
    assert all(abs(x - y) < 1e-5 for x, y in zip(ours[2]["scores"], theirs[2]["scores"], strict=True))
