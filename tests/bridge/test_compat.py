"""Mixed versions through real processes (docs/compatibility.md).

The previous release (the newest in releases.json, built from its commit by tests/support/compat.py)
against this one in both directions: today's bridge with its service, its bridge (its own `gpu-bridge`
process) with today's service; the same again with the first release, 0.3.0 (protocol 1), in `make soak`;
and today's bridge with the stand-in for the next release
(tests/support/next_release.py), whose answers carry fields no reader knows yet. Also: the service answers
each caller in its own version's shape, requests stay strict, a host that answers garbage is not
retried within a call, and a request field a host's version lacks is never sent to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mcp import Client
from starlette.responses import JSONResponse
from starlette.routing import Route

from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION, RELEASES
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.embedded import free_port
from mcp_bridge.mcp.server import build_server
from mcp_bridge.pool.caller import Caller, current_caller
from mcp_bridge.protocols.gpu_service import GpuServiceProtocol
from tests.support.compat import FIRST_RELEASE, PREVIOUS_RELEASE, OldRelease, OldService, old_release
from tests.support.fake_host import FakeHost
from tests.support.next_release import ADDED, NEXT_VERSION, next_release
from tests.support.services import TINY_RERANKER, ServiceProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
RERANKER = TINY_RERANKER
TEXTS = ["A man is eating food.", "A man eats bread.", "Stocks fell sharply today."]
DOCS = ["GPUs multiply matrices.", "The cat sat on the mat.", "Tensor cores speed up training."]


@pytest.fixture(scope="module", params=[PREVIOUS_RELEASE, FIRST_RELEASE])
def release(request: pytest.FixtureRequest) -> OldRelease:
    """The previous release; the first one (0.3.0, protocol 1) too in `make soak`."""
    if request.param != PREVIOUS_RELEASE and os.environ.get("GPU_BRIDGE_SOAK") != "1":
        pytest.skip(f"release {request.param} only in make soak (GPU_BRIDGE_SOAK=1)")
    found = old_release(request.param)
    # The old venv runs the old code: its packages, not this checkout's.
    assert found.origin("mcp_bridge").startswith(str(found.venv))
    assert found.origin("gpu_service").startswith(str(found.venv))
    assert found.origin("gpu_protocol").startswith(str(found.venv)), "the old venv imports today's gpu_protocol"
    return found


@pytest.fixture(scope="module")
def services(release: OldRelease, reranker_service: ServiceProcess,
             tiny_reranker_env: dict[str, str]) -> Iterator[dict[str, ServiceProcess]]:
    """A service of the old release and today's (the shared one), both with the tiny reranker as MODEL_RERANK."""
    old = OldService(release, tiny_reranker_env).start()
    try:
        yield {"old": old, "new": reranker_service}
    finally:
        old.stop()


@asynccontextmanager
async def bridge(hosts: list[dict[str, Any]], **settings: Any) -> AsyncIterator[tuple[Bridge, Client]]:
    async with Bridge(parse_config({"hosts": hosts, **settings}, "test"), allow_embedded=False) as running:
        async with Client(build_server(running)) as client:
            yield running, client


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def direct_vectors(url: str) -> np.ndarray:
    r = httpx.post(f"{url}/embed", json={"texts": TEXTS}, timeout=60)
    assert r.status_code == 200, r.text
    return np.array(r.json()["embeddings"])


async def every_tool(client: Client, reference: np.ndarray) -> dict[str, Any]:
    """gpu_embed, gpu_similarity, gpu_bertscore, gpu_rerank, gpu_info, gpu_health: each answers correctly."""
    calls = {
        "gpu_embed": {"texts": TEXTS, "encoding": "float"},
        "gpu_similarity": {"texts": TEXTS[1:], "query": TEXTS[0]},
        "gpu_bertscore": {"candidates": ["the cat sat"], "references": ["a cat was sitting"],
                          "model": "all-MiniLM-L6-v2"},
        "gpu_rerank": {"query": "graphics cards", "documents": DOCS},
        "gpu_info": {},
        "gpu_health": {},
    }
    out = {}
    for name, args in calls.items():
        result = await client.call_tool(name, args)
        assert not result.is_error, f"{name}: {text(result)}"
        out[name] = result.structured_content
    vectors = np.array(out["gpu_embed"]["embeddings"])
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert out["gpu_similarity"]["matches"][0]["index"] == 0, "the bread text is nearest the food text"
    assert 0.5 < out["gpu_bertscore"]["f1"][0] <= 1
    assert sorted(m["index"] for m in out["gpu_rerank"]["matches"]) == [0, 1, 2]
    assert all(row.get("info") for row in out["gpu_info"]["hosts"]), out["gpu_info"]
    assert out["gpu_health"]["healthy"] == len(out["gpu_info"]["hosts"])
    return out


def nothing_ejected(running: Bridge) -> None:
    for host in running.pool.snapshot().hosts:
        assert host.state == "healthy" and host.failed == 0 and host.ejections == 0, host


# --------------------------------------------------------------------------- the service's side


def test_the_service_answers_each_caller_in_its_versions_shape(services: dict[str, ServiceProcess]) -> None:
    url = services["new"].url
    old_caller = httpx.get(f"{url}/info", timeout=10)  # no header: a 0.3.0 bridge (protocol 1)
    assert old_caller.headers[PROTOCOL_HEADER] == str(PROTOCOL_VERSION)
    assert "protocol_version" not in old_caller.json() and "capabilities" not in old_caller.json()
    assert int(old_caller.headers["content-length"]) == len(old_caller.content)
    new_caller = httpx.get(f"{url}/info", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)}, timeout=10).json()
    assert new_caller["protocol_version"] == PROTOCOL_VERSION
    caps = new_caller["capabilities"]
    assert caps["embed"]["loaded"] == ["all-MiniLM-L6-v2"] and caps["similarity"] == caps["embed"]
    assert caps["rerank"]["default"] == RERANKER and caps["rerank"]["loaded"] == [RERANKER]
    # No MODEL_TRANSCRIBE here: no default and none loaded, but a request may name an allowed Whisper model
    # (one allowlist for every task; a name of the wrong kind is refused when it loads).
    transcribe = caps["transcribe"]
    assert (transcribe["default"], transcribe["loaded"], transcribe["allowed"]) == (None, [], caps["embed"]["allowed"])
    later = httpx.get(f"{url}/info", headers={PROTOCOL_HEADER: str(NEXT_VERSION)}, timeout=10).json()
    assert later["protocol_version"] == PROTOCOL_VERSION, "a later caller is answered in ours"
    # Requests the service receives stay strict: a typo is refused, naming the field.
    typo = httpx.post(f"{url}/embed", json={"texts": ["a"], "normalise": False}, timeout=10)
    assert typo.status_code == 422 and "normalise" in typo.text
    assert typo.headers[PROTOCOL_HEADER] == str(PROTOCOL_VERSION), "error answers state the version too"


# --------------------------------------------------------------------------- today's bridge, the old release's services


@pytest.mark.anyio
async def test_todays_bridge_with_an_old_service(release: OldRelease, services: dict[str, ServiceProcess]) -> None:
    old = services["old"]
    async with bridge([{"name": "old", "url": old.url}]) as (running, client):
        await every_tool(client, direct_vectors(old.url))
        described = running.pool.host("old").described
        assert described.version == release.protocol
        if release.protocol == 1:
            assert described.capabilities is None, "0.3.0 states neither"
        else:
            assert described.capabilities is not None and described.capabilities["embed"].serves("all-MiniLM-L6-v2")
        nothing_ejected(running)


@pytest.mark.anyio
async def test_an_old_service_ignores_the_class_and_tenant_it_is_told(
    release: OldRelease, services: dict[str, ServiceProcess]
) -> None:
    """Today's bridge sends `X-GPU-Priority` and `X-GPU-Tenant` to every gpu-service host; one of the previous
    release knows neither and serves all the same (a sharded batch call, and an interactive one)."""
    old = services["old"]
    async with bridge([{"name": "old", "url": old.url}], shardSize=2) as (running, _):
        named = current_caller.set(Caller(tenant="team-a", asked="batch"))
        try:
            sharded = await running.gpu.embed(TEXTS)
        finally:
            current_caller.reset(named)
        assert sharded.count == len(TEXTS) and set(sharded.hosts) == {"old"}
        interactive = await running.gpu.embed(TEXTS[:1])
        np.testing.assert_allclose(np.asarray(interactive.block.rows()), direct_vectors(old.url)[:1], atol=1e-5)
        sharing = running.pool.snapshot().sharing
        assert sharing is not None and sharing.tenants["team-a"].items == len(TEXTS)
        nothing_ejected(running)


@pytest.mark.anyio
async def test_a_field_a_hosts_version_lacks_is_never_sent_to_it(
    release: OldRelease, services: dict[str, ServiceProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later feature's field: left out at its default; otherwise the host is passed over, and with no
    host left the tool says which host speaks which version."""
    if release.protocol == PROTOCOL_VERSION:
        pytest.skip(f"release {release.version} speaks today's protocol: no field of today's is unknown to it")
    value: dict[str, Any] = {"later_feature": None}
    plain = GpuServiceProtocol.embed_call
    monkeypatch.setattr(GpuServiceProtocol, "embed_call",
                        lambda self, request: type(plain(self, request))(
                            "POST", "/embed", {**plain(self, request).json, **value}))
    hosts = [{"name": "old", "url": services["old"].url}, {"name": "new", "url": services["new"].url}]
    async with bridge(hosts) as (running, client):
        assert not (await client.call_tool("gpu_info", {})).is_error  # what every health check reads
        served = await client.call_tool("gpu_embed", {"texts": TEXTS})
        assert not served.is_error, text(served)
        value["later_feature"] = "on"
        refused = await client.call_tool("gpu_embed", {"texts": TEXTS})
        assert refused.is_error
        message = text(refused)
        assert "'old'" in message and f"protocol {release.protocol} ({release.version})" in message and "`later_feature`" in message
        assert "'new'" in message and f"protocol {PROTOCOL_VERSION}" in message
        nothing_ejected(running)


@pytest.mark.anyio
async def test_a_host_answering_garbage_is_not_retried_within_a_call(services: dict[str, ServiceProcess]) -> None:
    async def garbage(request: Any) -> JSONResponse:
        return JSONResponse({"model": "m", "dimensions": "many"})

    async def healthy(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok", "device": "cpu"})

    routes = [Route("/embed", garbage, methods=["POST"]), Route("/health", healthy)]
    with FakeHost(routes) as liar:
        async with bridge([{"name": "liar", "url": liar.url}], timeout=45) as (_, client):
            failed = await client.call_tool("gpu_embed", {"texts": TEXTS})
            assert failed.is_error and "malformed" in text(failed) and "deadline" not in text(failed), text(failed)
            assert liar.hits == 1, "one try: the same garbage would come back"
        liar.hits = 0
        hosts = [{"name": "liar", "url": liar.url}, {"name": "good", "url": services["new"].url}]
        async with bridge(hosts, loadBalancing="round-robin") as (running, client):
            for _ in range(2):
                served = await client.call_tool("gpu_embed", {"texts": TEXTS})
                assert not served.is_error and served.structured_content["hosts"] == ["good"], text(served)
            assert liar.hits <= 2, "at most one try per call"
            assert running.pool.host("good").record.failed == 0


# --------------------------------------------------------------------------- the old release's bridge, today's service


@pytest.mark.anyio
async def test_the_old_bridge_with_todays_service(release: OldRelease, services: dict[str, ServiceProcess]) -> None:
    new = services["new"]
    port = free_port()
    proc = subprocess.Popen(
        [release.script("gpu-bridge"), "--transport", "http", "--port", str(port), "--url", new.url],
        env={**release.env(), "HOME": str(Path(__file__).parent)}, cwd="/",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            try:
                httpx.get(f"{base}/mcp", timeout=1)
                return True
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                return False

        wait_until(answers, timeout=60, interval=0.2, message=f"the {release.version} bridge at {base} never answered")
        from mcp.client.streamable_http import streamable_http_client

        async with Client(streamable_http_client(f"{base}/mcp")) as client:
            await every_tool(client, direct_vectors(new.url))
            status = (await client.call_tool("gpu_status", {})).structured_content
            assert status["hosts"][0]["state"] == "healthy" and status["hosts"][0]["failed"] == 0, status
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.post(f"{base}/v1/embeddings", json={"input": TEXTS, "model": "all-MiniLM-L6-v2"})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        np.testing.assert_allclose(got, direct_vectors(new.url), atol=1e-5)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_check_shows_each_hosts_protocol_and_release(release: OldRelease, services: dict[str, ServiceProcess],
                                                     tmp_path: Path) -> None:
    """`gpu-bridge --check`, the upgrade procedure's check step, shows each host's protocol and its first release."""
    config = tmp_path / "pool.json"
    config.write_text(json.dumps({"hosts": [{"name": "old", "url": services["old"].url},
                                            {"name": "new", "url": services["new"].url}]}))
    env = {k: v for k, v in os.environ.items() if k != "GPU_BRIDGE_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "mcp_bridge", "--config", str(config), "--check"],
                         capture_output=True, text=True, timeout=120, env={**env, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.split()[:1] in (["old"], ["new"])}
    assert " ok " in rows["old"] and f" {release.protocol} ({RELEASES[release.protocol]}) " in rows["old"], out.stdout
    assert " ok " in rows["new"] and f" {PROTOCOL_VERSION} ({RELEASES[PROTOCOL_VERSION]}) " in rows["new"], out.stdout


# --------------------------------------------------------------------------- today's bridge, the next release


@pytest.mark.anyio
async def test_todays_bridge_with_the_next_release(services: dict[str, ServiceProcess]) -> None:
    new = services["new"]
    with next_release(new.url) as proxy:
        seen = httpx.get(f"{proxy.url}/info", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)}, timeout=10)
        assert ADDED in seen.json() and seen.headers[PROTOCOL_HEADER] == str(NEXT_VERSION)  # the stand-in works
        async with bridge([{"name": "next", "url": proxy.url}]) as (running, client):
            out = await every_tool(client, direct_vectors(new.url))
            assert ADDED not in str(out), "unknown answer fields are ignored, never passed on"
            described = running.pool.host("next").described
            assert described.version == NEXT_VERSION and described.capabilities is not None
            assert described.capabilities["embed"].serves("all-MiniLM-L6-v2")
            nothing_ejected(running)
