"""TLS: a service with a self-signed certificate; the pool trusts it only through a CA bundle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mcp_bridge.bridge import Bridge
from mcp_bridge.config import parse_config
from mcp_bridge.pool.errors import PoolError
from tests.support.in_process import process_fixture
from tests.support.services import ServiceProcess


@process_fixture(scope="module")
def tls_service(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    svc = ServiceProcess(args=["--ssl-keyfile", str(key), "--ssl-certfile", str(cert)]).start()
    yield svc, cert
    svc.stop()


@pytest.mark.anyio
async def test_pool_verifies_a_self_signed_host_with_a_ca_bundle(tls_service: tuple[ServiceProcess, Path]) -> None:
    svc, cert = tls_service
    assert svc.url.startswith("https://")
    config = {"hosts": [{"name": "tls", "url": svc.url, "tls": {"caBundle": str(cert)}}]}
    async with Bridge(parse_config(config, "t"), allow_embedded=False) as bridge:
        result = await bridge.gpu.embed(["over TLS"])
    assert result.dimensions == 384 and result.hosts == ["tls"]


@pytest.mark.anyio
async def test_pool_refuses_an_unverified_certificate(tls_service: tuple[ServiceProcess, Path]) -> None:
    svc, _ = tls_service
    config = {"hosts": [{"name": "tls", "url": svc.url}], "timeout": 3}
    async with Bridge(parse_config(config, "t"), allow_embedded=False) as bridge:
        with pytest.raises(PoolError) as err:
            await bridge.gpu.embed(["over TLS"])
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) or "certificate" in str(err.value).lower()
