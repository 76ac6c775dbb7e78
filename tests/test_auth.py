"""The service's key as either header: `X-API-Key` (the bridge's default) or `Authorization:
Bearer` (OpenAI clients, TEI, Infinity, vLLM), and the bridge sending whichever a host wants."""

from __future__ import annotations

import pytest

from mcp_bridge.config import parse_config
from mcp_bridge.runtime import Bridge
from tests.conftest import ServiceProcess

KEY = "s3cret-test-key-123"


def test_the_official_openai_client_authenticates_with_api_key(keyed_service: ServiceProcess) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{keyed_service.url}/v1", api_key=KEY, max_retries=0)
    result = client.embeddings.create(input=["a text"], model="all-MiniLM-L6-v2")
    assert len(result.data) == 1 and len(result.data[0].embedding) == 384
    wrong = openai.OpenAI(base_url=f"{keyed_service.url}/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.embeddings.create(input=["a text"], model="all-MiniLM-L6-v2")
    detail = err.value.response.json()["detail"]
    assert "wrong bearer token" in detail and KEY not in detail


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "auth"), [
    ("gpu-service", "bearer"),
    ("openai", None),  # an openai host sends a bearer token by default
    ("openai", "x-api-key"),
])
async def test_bridge_sends_the_key_the_way_the_host_is_configured(
    keyed_service: ServiceProcess, kind: str, auth: str | None
) -> None:
    host = {"name": "locked", "url": keyed_service.url, "type": kind, "apiKey": KEY, "model": "all-MiniLM-L6-v2"}
    if auth is not None:
        host["auth"] = auth
    async with Bridge(parse_config({"hosts": [host]}, "t"), allow_embedded=False) as bridge:
        result = await bridge.gpu.embed(["behind a key"])
    assert result.hosts == ["locked"] and result.dimensions == 384
