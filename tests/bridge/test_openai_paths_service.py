"""Our own service as an `openai` host of the bridge, for real: configured with a base URL that ends in /v1
and with one that does not (the other spellings, against stand-ins: tests/unit/test_openai_paths.py)."""

from __future__ import annotations

import pytest

from mcp_bridge.bridge import Bridge
from mcp_bridge.cli import _check
from mcp_bridge.config import parse_config
from tests.support.services import ServiceProcess


@pytest.mark.anyio
async def test_our_service_as_an_openai_host_with_a_v1_base_url(
    service: ServiceProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """Our service serves /v1/embeddings and /v1/models: configured as OpenAI clients are (`.../v1`), it is
    checked healthy and embeds as our own protocol does."""
    hosts = [{"name": "ours-v1", "url": f"{service.url}/v1", "type": "openai", "model": "all-MiniLM-L6-v2"},
             {"name": "ours-bare", "url": service.url, "type": "openai", "model": "all-MiniLM-L6-v2"}]
    cfg = parse_config({"hosts": hosts}, "t")
    assert await _check(cfg, "test") == 0
    out = capsys.readouterr().out
    assert "ours-v1 is called at POST /v1/embeddings (the URL ends in /v1)" in out
    assert "ours-bare is called at POST /v1/embeddings (GET /v1/models answered)" in out
    async with Bridge(parse_config({"hosts": hosts[:1]}, "t")) as bridge:
        via_openai = await bridge.gpu.embed(["same text"])
    async with Bridge(parse_config({"hosts": [{"url": service.url}]}, "t")) as bridge:
        native = await bridge.gpu.embed(["same text"])
    assert via_openai.hosts == ["ours-v1"]
    assert max(abs(a - b) for a, b in zip(via_openai.embeddings[0], native.embeddings[0], strict=True)) < 1e-5
