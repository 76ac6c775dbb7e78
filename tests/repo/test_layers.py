"""The bridge's layers as rules: the import-linter contracts in pyproject.toml hold, a broken one is
caught, and no function in mcp_bridge, gpu_service or gpu_protocol grows past the style guide's ~60 lines."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_FUNCTION_LINES = 60

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (extra `dev`)")


def lint_imports(cwd: Path, *config: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *config], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # lint-imports runs as a process
def test_every_import_contract_in_pyproject_holds() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout and "bridge-layers" not in run.stderr


@pytest.mark.slow
def test_a_pool_module_that_imports_the_mcp_server_breaks_a_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mcp_bridge", tmp_path / "mcp_bridge", ignore=shutil.ignore_patterns("__pycache__"))
    hosts = tmp_path / "mcp_bridge" / "pool" / "hosts.py"
    hosts.write_text(hosts.read_text() + "\nfrom mcp_bridge.mcp import errors as _errors  # the pool reaching up\n")
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (pool_rule,) = [c for c in contracts if c["id"] == "bridge-pool-knows-no-front-end"]
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["mcp_bridge"]\nexclude_type_checking_imports = true\n\n'
        "[[tool.importlinter.contracts]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in pool_rule.items())
    )
    run = lint_imports(tmp_path, str(config))
    assert run.returncode != 0, run.stdout
    assert "mcp_bridge.pool never imports the MCP server or the HTTP API BROKEN" in " ".join(run.stdout.split())
    assert "mcp_bridge.pool.hosts -> mcp_bridge.mcp.errors" in run.stdout


def test_no_function_in_the_bridge_the_service_or_the_protocol_is_over_60_lines() -> None:
    long = []
    for path in sorted(p for package in ("mcp_bridge", "gpu_service", "gpu_protocol") for p in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these into named steps: " + ", ".join(long)
