"""Model-aware routing across real `gpu-service` processes: the bundled model on all three hosts, a
second embedding model (the bundled weights under a new name, in one host's GPU_MODEL_DIRS) on one.
Calls naming the second model all reach that host; once it is killed they fail naming what each host
has, the bundled model keeps working on the others, and no host is held to blame for a model it lacks."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess, start_together
from tests.support.waiting import wait_until_async

SECOND = "mini-second"
CALLS = 40


@process_fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, bundled_model_path: str) -> Iterator[list[ServiceProcess]]:
    models = tmp_path_factory.mktemp("models")
    (models / SECOND).symlink_to(Path(bundled_model_path), target_is_directory=True)
    services = start_together([
        ServiceProcess(env={"GPU_MODEL_DIRS": str(models)}),  # h0: may load the second model
        ServiceProcess(),
        ServiceProcess(),
    ])
    yield services
    for svc in services:
        svc.stop()


@pytest.mark.anyio
async def test_calls_naming_a_model_reach_only_the_host_that_serves_it(fleet: list[ServiceProcess]) -> None:
    hosts = [{"name": f"h{i}", "url": s.url} for i, s in enumerate(fleet)]
    config = parse_config({"hosts": hosts, "healthCheckIntervalSeconds": 0.5, "timeout": 20,
                           "loadBalancing": "round-robin"}, "t")
    async with Bridge(config, allow_embedded=False) as bridge:
        await wait_until_async(lambda: all(h.described.capabilities for h in bridge.pool.hosts),
                               timeout=30, message="every host should describe itself (/info) within a few checks")
        async with Client(build_server(bridge)) as c:
            reached: collections.Counter[str] = collections.Counter()
            for i in range(CALLS):
                r = await c.call_tool("gpu_embed", {"texts": [f"second model text {i}"], "model": SECOND})
                assert not r.is_error, r.content
                reached.update(r.structured_content["hosts"])
            assert reached == {"h0": CALLS}, f"of {CALLS} calls naming {SECOND}: {dict(reached)}"

            info = (await c.call_tool("gpu_info", {})).structured_content["hosts"]
            embed = {row["name"]: next(m for m in row["models"] if m["task"] == "embed") for row in info}
            assert SECOND in embed["h0"]["loaded"] and SECOND not in embed["h1"]["allowed"]

            fleet[0].stop()
            failed = await c.call_tool("gpu_embed", {"texts": ["no host left for it"], "model": SECOND})
            assert failed.is_error
            message = failed.content[0].text  # type: ignore[union-attr]
            assert f"model '{SECOND}' is served by h0 only" in message, message
            assert "h1: default all-MiniLM-L6-v2" in message and "GPU_MODEL_DIRS" in message, message

            for i in range(10):
                r = await c.call_tool("gpu_embed", {"texts": [f"bundled text {i}"], "model": "all-MiniLM-L6-v2"})
                assert not r.is_error, r.content
                assert set(r.structured_content["hosts"]) <= {"h1", "h2"}
        for name in ("h1", "h2"):
            record = bridge.pool.host(name).record
            assert record.failed == 0 and record.ejections == 0, f"{name} was held to blame: {record.last_error}"
