"""The operator's default models: a local directory works as a default, and a default that
fails to load leaves a service that says so (`degraded`) instead of looking healthy.

Real `gpu-service` processes, configured the way an operator on a box without hub access
does it: a copy of the bundled model in a folder named after the model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client

from gpu_protocol.routes import PROTOCOL_HEADER
from gpu_protocol.versions import PROTOCOL_VERSION
from gpu_service.errors import ModelNotAllowed
from gpu_service.models.resolve import ModelPolicy
from gpu_service.settings import Settings
from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.mcp.server import build_server
from tests.support import ROOT
from tests.support.bridges import bridge_env
from tests.support.services import ServiceProcess


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, bundled_model_path: str) -> Path:
    """The bundled model copied to `<tmp>/models/all-MiniLM-L6-v2`, as an operator would lay it out."""
    target = tmp_path_factory.mktemp("models") / "all-MiniLM-L6-v2"
    shutil.copytree(bundled_model_path, target)
    return target


def test_policy_allows_the_operators_defaults_by_path_and_by_folder_name(tmp_path: Path) -> None:
    default = tmp_path / "models" / "my-embedder"
    default.mkdir(parents=True)
    policy = ModelPolicy(Settings(default_models={"embed": str(default), "bertscore": "all-MiniLM-L6-v2"}))
    spellings = [str(default), f"{default}/", str(tmp_path / "models" / ".." / "models" / "my-embedder"),
                 "my-embedder", "some-org/my-embedder"]
    for name in spellings:
        policy.check(name)
        assert policy.canonical(name) == str(default), name
    # Paths a client invents stay refused: a sibling, the parent, a path below the default.
    for invented in (tmp_path / "models" / "other", tmp_path / "models", default / "sub"):
        with pytest.raises(ModelNotAllowed, match="GPU_MODEL_DIRS"):
            policy.check(str(invented))


def health(svc: ServiceProcess) -> dict:
    r = httpx.get(f"{svc.url}/health")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.anyio
async def test_a_model_directory_as_the_default(service_factory, model_dir: Path) -> None:
    svc = service_factory(env={"MODEL_EMBED": str(model_dir), "MODEL_BERTSCORE": str(model_dir),
                               "BERTSCORE_NUM_LAYERS": "6"}).start()
    # Named by omission, by its path, by another spelling of the path, by its folder name: one model.
    for model in (None, str(model_dir), f"{model_dir.parent}/../{model_dir.parent.name}/{model_dir.name}",
                  "all-MiniLM-L6-v2"):
        r = httpx.post(f"{svc.url}/embed", json={"texts": ["hello"], **({"model": model} if model else {})})
        assert r.status_code == 200, (model, r.text)
        assert r.json()["model"] == str(model_dir)
    bert = httpx.post(f"{svc.url}/bertscore", json={"candidates": ["the cat sat"], "references": ["a cat sat"]})
    assert bert.status_code == 200, bert.text
    assert bert.json()["num_layers"] == 6 and bert.json()["model"] == str(model_dir)
    loaded = {m["name"] for m in httpx.get(f"{svc.url}/info").json()["models"]}
    assert loaded == {str(model_dir), f"{model_dir}@L6"}, "both defaults loaded, and no second copy"
    assert health(svc) == {"status": "ok", "device": "cpu", "problems": []}

    invented = httpx.post(f"{svc.url}/embed", json={"texts": ["a"], "model": str(model_dir.parent / "other")})
    assert invented.status_code == 403 and "filesystem path" in invented.json()["detail"]

    # Through the bridge, with models.embed/models.bertscore naming the directory.
    config = {"hosts": [{"url": svc.url}], "models": {"embed": str(model_dir), "bertscore": str(model_dir)}}
    async with Bridge(parse_config(config, "test"), allow_embedded=False) as bridge:
        async with Client(build_server(bridge)) as client:
            for tool, args in (("gpu_embed", {"texts": ["hello", "world"]}),
                               ("gpu_similarity", {"texts": ["a cat", "tax law"], "query": "kittens"}),
                               ("gpu_bertscore", {"candidates": ["the cat sat"], "references": ["a cat sat"]})):
                result = await client.call_tool(tool, args)
                assert not result.is_error, (tool, result.content[0].text)


def test_a_default_that_fails_to_load_degrades_the_service(service_factory, tmp_path: Path) -> None:
    broken = tmp_path / "broken-embedder"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    # The embedding default is loaded first: the BERTScore default must still load after it fails.
    svc = service_factory(env={"MODEL_EMBED": str(broken)}).start()
    body = health(svc)
    assert body["status"] == "degraded", body
    [problem] = body["problems"]
    assert f"MODEL_EMBED={str(broken)!r}" in problem and "could not be loaded" in problem
    status = httpx.get(f"{svc.url}/status").json()
    assert status["status"] == "degraded" and status["problems"] == body["problems"]
    assert {m["name"] for m in status["models"]} == {"all-MiniLM-L6-v2@L6"}
    assert httpx.post(f"{svc.url}/bertscore", json={"candidates": ["a"], "references": ["b"]}).status_code == 200
    r = httpx.post(f"{svc.url}/embed", json={"texts": ["a"]})
    assert r.status_code == 500 and "could not be loaded" in r.json()["detail"]
    assert "MODEL_EMBED" in svc.logs() and "failed to load" in svc.logs()
    stated = {PROTOCOL_HEADER: str(PROTOCOL_VERSION)}  # a caller that states no version gets 0.3.0's /info
    capabilities = httpx.get(f"{svc.url}/info", headers=stated).json()["capabilities"]
    assert capabilities["embed"]["failed"] == [str(broken)] and capabilities["bertscore"]["failed"] == []

    check = subprocess.run([sys.executable, "-m", "mcp_bridge", "--url", svc.url, "--check"], env=bridge_env(),
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr  # degraded is usable: it serves BERTScore
    assert "degraded" in check.stdout and f"MODEL_EMBED={str(broken)!r}" in check.stdout
    assert "could not be loaded" in check.stdout, "the reason is printed in full, not cut to the table"
    assert f"embed: default {broken}, loaded none, may load" in check.stdout and f"failed: {broken}" in check.stdout


@pytest.mark.anyio
async def test_bertscore_directory_default_needs_its_layer(service_factory, model_dir: Path) -> None:
    svc = service_factory(env={"MODEL_BERTSCORE": str(model_dir)}).start()
    body = health(svc)
    assert body["status"] == "degraded" and "BERTSCORE_NUM_LAYERS" in body["problems"][0], body
    assert httpx.post(f"{svc.url}/embed", json={"texts": ["a"]}).status_code == 200
    r = httpx.post(f"{svc.url}/bertscore", json={"candidates": ["a"], "references": ["b"]})
    # The host's configuration is at fault, not the request: 503, so a pool tries another host.
    assert r.status_code == 503 and "BERTSCORE_NUM_LAYERS" in r.json()["detail"], r.text
    with_layer = httpx.post(f"{svc.url}/bertscore", json={"candidates": ["a"], "references": ["b"], "num_layers": 6})
    assert with_layer.status_code == 200, with_layer.text
    assert health(svc)["status"] == "degraded", "the default (with its configured layer) is still missing"

    # The bridge's health loop and tools show it.
    async with Bridge(parse_config({"hosts": [{"name": "box", "url": svc.url}]}, "test"),
                      allow_embedded=False) as bridge:
        assert bridge.pool is not None and bridge.monitor is not None
        host = bridge.pool.host("box")
        assert await bridge.monitor.probe(host), "a degraded host passes the probe: it still serves"
        assert host.state(bridge.pool.clock()) == "degraded" and "BERTSCORE_NUM_LAYERS" in host.record.problems[0]
        async with Client(build_server(bridge)) as client:
            result = await client.call_tool("gpu_health", {})
            assert "box: degraded" in result.content[0].text and "BERTSCORE_NUM_LAYERS" in result.content[0].text
            status = (await client.call_tool("gpu_status", {})).structured_content
            assert status["hosts"][0]["state"] == "degraded"
