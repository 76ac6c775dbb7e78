"""The service's key as either header: `X-API-Key` (the bridge's default) or `Authorization:
Bearer` (OpenAI clients, TEI, Infinity, vLLM), and the bridge sending whichever a host wants."""

from __future__ import annotations

import logging

import httpx
import pytest
from mcp import Client
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.http_api.openai import openai_app
from mcp_bridge.mcp.server import build_server
from tests.support.fake_host import FakeHost
from tests.support.services import ServiceProcess


async def healthy(request: Request) -> Response:
    return JSONResponse({"status": "ok", "device": "cpu"})

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


@pytest.mark.anyio
async def test_a_host_that_echoes_the_key_never_leaks_it_to_the_agent_or_an_openai_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Some servers repeat the key they were sent in their 401 (OpenAI's own API does, in part). The
    bridge passes a host's refusal on, with the host named, but its configured keys become ***."""
    caplog.set_level(logging.DEBUG)
    host_key, bridge_token = "sk-host-key-0123456789", "bridge-token-9876543210"

    async def refuse(request: Request) -> Response:
        sent = request.headers.get("x-api-key", "")
        return JSONResponse({"detail": f"Incorrect API key provided: {sent}"}, status_code=401)

    with FakeHost([Route("/embed", refuse, methods=["POST"]), Route("/health", healthy)]) as fake:
        config = parse_config({"hosts": [{"name": "echo", "url": fake.url, "apiKey": host_key}],
                               "apiKey": bridge_token}, "t")
        async with Bridge(config, allow_embedded=False) as bridge:
            async with Client(build_server(bridge)) as client:
                tool = await client.call_tool("gpu_embed", {"texts": ["hello"]})
            app = openai_app(bridge.gpu, bridge.config)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as http:
                api = await http.post("/v1/embeddings", json={"input": ["hello"], "model": "m"},
                                      headers={"Authorization": f"Bearer {bridge_token}"})
    text = tool.content[0].text
    assert tool.is_error and "echo" in text and "Incorrect API key provided: ***" in text, text
    assert host_key not in text and bridge_token not in text
    assert api.status_code == 502 and "Incorrect API key provided: ***" in api.text, api.text
    assert host_key not in api.text and bridge_token not in api.text
    assert host_key not in caplog.text and bridge_token not in caplog.text, "nor in the bridge's log"
