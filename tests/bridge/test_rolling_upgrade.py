"""A rolling upgrade under load, through real processes (issue 21 §4; docs/compatibility.md).

Three `gpu-service` hosts (two in `make test`, three in `make soak`) on the previous release (the newest
in releases.json, built from its commit by tests/support/compat.py) behind today's bridge (in-process,
with an MCP client). While at least 600 (200 in `make test`) `gpu_embed` / `gpu_similarity` calls run,
a bounded number at a time, each host in turn is drained with SIGTERM (the service finishes what is
in flight), replaced by today's release on the same port, and brought back: the next host goes down
only once the bridge's health loop has seen the new one healthy, speaking today's protocol. No call
may fail, and every result is checked against its own texts' vectors (computed once before the run,
compared with a tolerance: batches differ). Afterwards every host speaks today's protocol version.

The test holds its load while the hosts go down and come back (the calls go on until the upgrade is
done, and to at least CALLS), so what it measures is what an operator's upgrade looks like to callers.
Its time is mostly the model loads (the old hosts and their replacements), so it grows with the
machine's load (the deadlines allow minutes per load; nothing here is timed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from mcp import Client

from gpu_protocol.versions import PROTOCOL_VERSION
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from mcp_bridge.pool.hosts import Host
from tests.support.compat import PREVIOUS_RELEASE, OldRelease, OldService, old_release
from tests.support.reliability import record
from tests.support.services import ServiceProcess
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.slow

SOAK = os.environ.get("GPU_BRIDGE_SOAK") == "1"
HOSTS = 3 if SOAK else 2
"""Three hosts in `make soak`; two in `make test`, to keep the suite within its time (each host is two
model loads; the drain-and-replace of each is the same)."""
CALLS = 600 if SOAK else 200
"""At least this many calls; more when the upgrade outlasts them (the load holds until it is done)."""
CONCURRENCY = 16
PAUSE_S = 1.0
"""Each caller's pause between its calls: spreads the calls over the upgrade instead of a burst."""
TOLERANCE = 1e-4
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "GPU", "hosts", "drain",
         "and", "come", "back"]


def vocabulary() -> list[str]:
    """48 texts of mixed lengths (2 to ~90 words): shards and batches of different layouts."""
    return [f"text {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(2 + (i * 7) % 90))
            for i in range(48)]


@dataclass
class Load:
    """The calls, what each must answer (from the reference vectors), and what went wrong."""

    texts: list[str]
    reference: np.ndarray
    started: int = 0
    failures: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=lambda: {"gpu_embed": 0, "gpu_similarity": 0})
    upgraded: asyncio.Event = field(default_factory=asyncio.Event)

    def more(self) -> bool:
        return self.started < CALLS or not self.upgraded.is_set()

    def call(self, i: int) -> tuple[str, dict[str, Any], list[int]]:
        """Call number `i`: which tool, its arguments, and which texts (by index) it carries."""
        n = len(self.texts)
        picked = [(i * 13 + k * 5) % n for k in range(1 + i % 6)]
        if i % 2 == 0:
            return "gpu_embed", {"texts": [self.texts[j] for j in picked], "encoding": "float"}, picked
        query = (i * 3 + 1) % n
        if i % 4 == 1:
            return "gpu_similarity", {"query": self.texts[query], "texts": [self.texts[j] for j in picked],
                                      "top_k": len(picked)}, [query, *picked]
        others = [(j + 1) % n for j in picked]
        return "gpu_similarity", {"texts": [self.texts[j] for j in picked],
                                  "texts_b": [self.texts[j] for j in others]}, picked + others

    def check(self, i: int, tool: str, out: dict[str, Any], used: list[int]) -> None:
        ref = self.reference
        if tool == "gpu_embed":
            got = np.array(out["embeddings"])
            assert got.shape == (len(used), ref.shape[1]), got.shape
            np.testing.assert_allclose(got, ref[used], atol=TOLERANCE, err_msg=f"call {i}: vectors")
        elif out["mode"] == "query":
            query, docs = used[0], used[1:]
            assert sorted(m["index"] for m in out["matches"]) == list(range(len(docs))), out["matches"]
            for m in out["matches"]:
                want = float(ref[query] @ ref[docs[m["index"]]])
                assert abs(m["score"] - want) < TOLERANCE, f"call {i}: match {m} vs {want:.6f}"
        else:
            half = len(used) // 2
            want = np.einsum("ij,ij->i", ref[used[:half]], ref[used[half:]])
            np.testing.assert_allclose(out["scores"], want, atol=TOLERANCE, err_msg=f"call {i}: pair scores")

    async def caller(self, client: Client) -> None:
        while self.more():
            i = self.started
            self.started += 1
            tool, args, used = self.call(i)
            self.kinds[tool] += 1
            result = await client.call_tool(tool, args)
            if result.is_error:
                self.failures.append(f"call {i} ({tool}): {getattr(result.content[0], 'text', result.content)}")
            else:
                try:
                    self.check(i, tool, result.structured_content or {}, used)
                except AssertionError as exc:
                    self.failures.append(f"call {i} ({tool}) answered wrongly: {exc}")
            await asyncio.sleep(PAUSE_S)


@dataclass
class Step:
    """One host's turn: what it had in flight when drained, and how long it was out."""

    name: str
    in_flight_at_sigterm: int
    drain_s: float
    out_s: float
    served_by_old: int


@pytest.fixture(scope="module")
def release() -> OldRelease:
    found = old_release(PREVIOUS_RELEASE)
    assert found.origin("gpu_service").startswith(str(found.venv)), "the old venv runs the old code"
    return found


@pytest.fixture
def hosts(release: OldRelease) -> Iterator[list[ServiceProcess]]:
    """`HOSTS` hosts on the previous release; the test puts today's release in their places (all stopped at the end)."""
    running: list[ServiceProcess] = [OldService(release) for _ in range(HOSTS)]
    try:
        for svc in running:
            svc.start(wait=False)
        for svc in running:
            svc.wait_ready(timeout=300)  # model loads at once: minutes on a loaded machine
        yield running
    finally:
        for svc in running:
            svc.stop()


async def replace(host: Host, hosts: list[ServiceProcess], k: int) -> Step:
    """Drain host `k` (SIGTERM) while calls are in flight on it, start today's release on its port,
    and wait until the bridge's health loop has it healthy on today's protocol."""
    old = hosts[k]
    assert old.process is not None
    # The first host is drained as the load begins: wait until it has answered on the old release (its
    # first calls pay its warm-up) and holds calls again, or the test shows a drain of a host that never served.
    await wait_until_async(lambda: host.record.served > 0 and host.record.in_flight > 0, timeout=60, interval=0.05,
                           message=f"{host.name} should have served calls and hold some in flight before it is drained")
    in_flight = host.record.in_flight
    started = time.monotonic()
    old.signal(signal.SIGTERM)
    code = await asyncio.to_thread(old.process.wait, 60)
    # uvicorn re-raises the signal once it has shut down gracefully: -15 is a clean exit here too.
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in old.logs(), (
        f"{host.name} ({old.release.version}) did not drain cleanly: exit {code}\n{old.logs()[-2000:]}")
    drained = time.monotonic()
    served_by_old = host.record.served
    new = ServiceProcess(port=old.port)
    hosts[k] = new
    await asyncio.to_thread(new.start, False)
    try:
        await wait_until_async(
            lambda: host.state(time.monotonic()) == "healthy" and host.described.version == PROTOCOL_VERSION,
            timeout=300, interval=0.1,  # a model load on a loaded machine can take minutes
            message=f"the bridge's health loop should see {host.name} back, healthy, on protocol {PROTOCOL_VERSION}",
        )
    except AssertionError as exc:
        seen = f"{host.state(time.monotonic())}, protocol {host.described.version}, {host.record.last_error}"
        raise AssertionError(f"{exc}; the bridge sees it {seen}; its log:\n{new.logs()[-1500:]}") from None
    # Back means serving: the bridge routes to it once its /info shows the model loaded (until then the
    # hosts that hold it are preferred, pool/routing.py), so the load holds until it has taken calls.
    await wait_until_async(lambda: host.record.served > served_by_old, timeout=120, interval=0.1,
                           message=f"{host.name} should take calls again on today's release")
    return Step(host.name, in_flight, drained - started, time.monotonic() - drained, served_by_old)


async def upgrade_all(bridge: Bridge, hosts: list[ServiceProcess], load: Load) -> list[Step]:
    try:
        return [await replace(bridge.pool.host(f"h{k}"), hosts, k) for k in range(len(hosts))]
    finally:
        load.upgraded.set()


@pytest.mark.anyio
async def test_rolling_upgrade_of_the_hosts_under_load_loses_no_call(hosts: list[ServiceProcess]) -> None:
    texts = vocabulary()
    r = httpx.post(f"{hosts[0].url}/embed", json={"texts": texts}, timeout=120)
    assert r.status_code == 200, r.text
    load = Load(texts, np.array(r.json()["embeddings"]))
    config = {"hosts": [{"name": f"h{k}", "url": s.url} for k, s in enumerate(hosts)], "timeout": 120,
              "healthCheckIntervalSeconds": 0.5}
    async with Bridge(parse_config(config, "rolling"), allow_embedded=False) as bridge:
        old = hosts[0].release if isinstance(hosts[0], OldService) else None
        assert old is not None
        await wait_until_async(lambda: all(h.described.version == old.protocol for h in bridge.pool.hosts),
                               timeout=30, message=f"the bridge should see only {old.version} hosts first")
        async with Client(build_server(bridge)) as client:
            began = time.monotonic()
            callers = [asyncio.create_task(load.caller(client)) for _ in range(CONCURRENCY)]
            try:
                steps = await upgrade_all(bridge, hosts, load)
                await asyncio.gather(*callers)
            finally:
                for task in callers:
                    task.cancel()
                await asyncio.gather(*callers, return_exceptions=True)
            took = time.monotonic() - began
            info = (await client.call_tool("gpu_info", {})).structured_content or {}
        served = {h.name: h.record.served for h in bridge.pool.hosts}
        described = {h.name: h.described.version for h in bridge.pool.hosts}
    per_host = ", ".join(f"{s.name} {s.served_by_old} on {old.version} + {served[s.name] - s.served_by_old} on today's "
                         f"(drained {s.in_flight_at_sigterm} in flight in {s.drain_s:.1f}s, out {s.out_s:.1f}s)"
                         for s in steps)
    record("fault", f"rolling upgrade {old.version} -> today, {HOSTS} hosts drained (SIGTERM) and replaced one at a time, "
           f"{CONCURRENCY} concurrent gpu_embed/gpu_similarity callers",
           f"{load.started} calls ({load.kinds['gpu_embed']} embed, {load.kinds['gpu_similarity']} similarity), "
           f"{len(load.failures)} failed, every result checked against its texts' vectors; {took:.0f}s; "
           f"requests per host: {per_host}")
    assert not load.failures, f"{len(load.failures)} of {load.started} calls failed:\n" + "\n".join(load.failures[:10])
    assert load.started >= CALLS
    assert described == {f"h{k}": PROTOCOL_VERSION for k in range(HOSTS)}, described
    assert [row["info"]["protocol_version"] for row in info["hosts"]] == [PROTOCOL_VERSION] * HOSTS, info
    for name, count in served.items():
        step = next(s for s in steps if s.name == name)
        assert step.served_by_old > 0 and count > step.served_by_old, f"{name} served on both releases"
