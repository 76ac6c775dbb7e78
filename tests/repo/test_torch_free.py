"""The wire schema and the bridge import without torch, in a fresh interpreter (the schema's own rules:
tests/unit/test_schema.py; the wheels' contents: tests/repo/test_packaging.py)."""

import subprocess
import sys

import pytest


@pytest.mark.slow  # starts a process
def test_schema_and_bridge_import_without_torch() -> None:
    code = (
        "import sys; import gpu_protocol.embed, gpu_protocol.bertscore, gpu_protocol.similarity, "
        "gpu_protocol.rerank, gpu_protocol.status, gpu_protocol.auth, mcp_bridge.mcp.server, mcp_bridge.cli; "
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
