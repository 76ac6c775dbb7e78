"""The documentation checked like code: README.md and docs/*.md.

Every link between pages (and to files, `#anchors` included) resolves; every JSON/JSON5 snippet parses and,
where it is a bridge or OpenClaw configuration, passes the bridge's own parser (and the plugin's configSchema);
every shell command names a real make target, console-script flag, module or file; every environment variable
named exists, and every one the service or the bridge reads is documented; the reference tables (the README's
tools, the bridge's configuration keys, the service's routes) match the code. The client snippets themselves
run in tests/test_readme.py, test_openai_api.py and test_openclaw.py.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any, get_args

import json5
import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from mcp_bridge.config import BridgeConfig, ConfigError, parse_config, plugin_section
from tests.support.doc_commands import (
    OTHER_PROGRAMS_FLAGS,
    REPO_PATH,
    command_problems,
    curl_problems,
    known_variables,
    make_problems,
    options_of,
    script_problems,
    service_routes,
    string_literals,
)
from tests.support.doc_pages import (
    README,
    ROOT,
    Block,
    all_blocks,
    anchors,
    code_spans,
    linked_pages,
    links,
    pages,
    shell_commands,
    table,
)

NOT_YET_WRITTEN: set[str] = set()
"""Files a change adds later that a page links already; a link to one is checked once it exists."""
ENV_NAME = re.compile(r"\b(?:(?:GPU|MODEL|BERTSCORE|OPENCLAW|TORCH|HF)_[A-Z0-9_]*[A-Z0-9]|API_KEY|ALLOWED_MODELS|LOG_LEVEL)\b")
DOTTED_NAME = re.compile(r"^(?:gpu_service|mcp_bridge|gpu_protocol)(?:\.\w+)+$")
DOCUMENTED_PACKAGES = ("mcp_bridge", "gpu_protocol", "gpu_service")
"""Packages whose every sub-package docs/architecture.md names."""


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --------------------------------------------------------------------------- links


def link_problems(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for line, target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: outside the repository
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.name}:{line}: {target}"
        if not resolved.is_relative_to(root):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            if resolved.relative_to(root).as_posix() not in NOT_YET_WRITTEN:
                problems.append(f"{where}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            problems.append(f"{where}: no heading with that anchor in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", linked_pages(), ids=page_name)
def test_every_link_resolves(page: Path) -> None:
    assert not link_problems(page)


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) [anchor](#nowhere) `[in code](x.md)`\n")
    problems = link_problems(page, root=tmp_path)
    assert len(problems) == 2 and "missing.md" in problems[0] and "#nowhere" in problems[1]


def test_every_page_is_reachable_from_the_readme() -> None:
    seen, frontier = {README}, [README]
    while frontier:
        for found in _linked(frontier.pop()) - seen:
            seen.add(found)
            frontier.append(found)
    assert not [page_name(p) for p in pages() if p not in seen], "pages no link leads to"


def _linked(page: Path) -> set[Path]:
    targets = ((page.parent / t.partition("#")[0]).resolve() for _, t in links(page) if not re.match(r"[a-z]+:", t))
    return {t for t in targets if t.suffix == ".md" and t.exists()}


def test_the_readme_is_a_short_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 250
    assert {p for p in pages() if p != README} <= _linked(README), "the README links every page in docs/"


# --------------------------------------------------------------------------- shell commands


def test_every_shell_command_names_real_targets_flags_modules_and_files() -> None:
    shells = [b for b in all_blocks() if b.language in ("bash", "sh", "shell")]
    assert len(shells) > 10
    problems = [f"{b.where()}: {p}" for b in shells for words in shell_commands(b.text) for p in command_problems(words)]
    assert not problems, "\n".join(problems)


def test_inline_commands_name_real_targets_and_flags() -> None:
    """`make ...`, `pip install ...`, `gpu-bridge --flag` and a `--flag` alone in the prose: targets, packages and
    flags exist."""
    problems = []
    for page in pages():
        for line, span in code_spans(page):
            words = span.split()
            if re.fullmatch(r"--[\w-]+", words[0].split("=")[0]):  # a flag alone: one of our scripts' or listed
                flag = words[0].split("=")[0]
                ours = options_of("gpu-bridge") | options_of("gpu-service")
                if flag not in ours | OTHER_PROGRAMS_FLAGS:
                    problems.append(f"{page.name}:{line}: neither gpu-bridge nor gpu-service takes {flag}")
            elif words[0] in ("gpu-bridge", "gpu-service"):
                flags = {f for w in words[1:] for f in w.split("/") if f.startswith("--")}
                problems += [f"{page.name}:{line}: {words[0]} has no {f}" for f in flags - options_of(words[0])]
            elif words[0] in ("make", "pip") or words[:2] == ["python", "-m"]:
                with contextlib.suppress(ValueError):
                    problems += [f"{page.name}:{line}: {p}" for p in command_problems(shlex.split(span))]
    assert not problems, "\n".join(problems)


def test_the_command_check_finds_a_wrong_target_flag_file_or_package() -> None:
    assert make_problems(["no-such-target"]) and not make_problems(["run", "PORT=9000"])
    assert command_problems(["gpu-bridge", "--no-such-flag"]) and not command_problems(["gpu-bridge", "--check"])
    assert command_problems(["kubectl", "apply", "-f", "deploy/k8s/gone.yaml"])
    assert command_problems(["pip", "install", "openclaw-gpu-service[nope]"])
    assert command_problems(["NO_SUCH_VARIABLE=1", "gpu-service"]) and command_problems(["frobnicate"])
    assert curl_problems(["http://127.0.0.1:8765/no-such-route"]) and not curl_problems(["localhost:8765/v1/rerank"])


# --------------------------------------------------------------------------- environment variables


def test_every_environment_variable_named_exists() -> None:
    problems = []
    for page in pages():
        for number, line in enumerate(page.read_text().splitlines(), start=1):
            problems += [f"{page.name}:{number}: {name}" for name in ENV_NAME.findall(line)
                         if name not in known_variables()]
    assert not problems, "variables nothing reads:\n" + "\n".join(problems)


def read_variables(package: str, pattern: str) -> set[str]:
    return {name for name in string_literals(package) if re.fullmatch(pattern, name)}


def test_every_variable_the_service_and_the_bridge_read_is_in_the_configuration_page() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    service = read_variables("gpu_service", r"(GPU|MODEL|BERTSCORE|TORCH)_\w+|API_KEY|ALLOWED_MODELS|LOG_LEVEL|HF_HUB_OFFLINE")
    bridge = read_variables("mcp_bridge", r"(GPU_BRIDGE|OPENCLAW)_\w+")
    assert len(service) > 20 and len(bridge) > 8
    assert not [name for name in sorted(service | bridge) if f"`{name}`" not in page], "undocumented"


# --------------------------------------------------------------------------- snippets


def config_problems(data: Any, where: str) -> list[str]:
    """A bridge configuration (or an OpenClaw config holding the plugin's), as the bridge reads it."""
    try:
        parse_config(plugin_section(data), where)
    except ConfigError as err:
        return [str(err)]
    if "plugins" in data:
        schema = json.loads((ROOT / "openclaw.plugin.json").read_text())["configSchema"]
        try:
            jsonschema.validate(plugin_section(data), schema)
        except jsonschema.ValidationError as err:
            return [f"{where}: the plugin's configSchema refuses it: {err.message}"]
    return []


def client_entry_problems(entry: dict[str, Any], where: str) -> list[str]:
    """An MCP client's server entry: a stdio command line the bridge takes, or the bridge's HTTP endpoint."""
    if "url" in entry:
        return [] if entry["url"].endswith(("/mcp", "/sse")) else [f"{where}: {entry['url']} is no bridge endpoint"]
    args = list(entry.get("args", []))
    if entry["command"] == "uvx":
        args = args[args.index("gpu-bridge") + 1:]
    elif entry["command"] != "gpu-bridge":
        return [f"{where}: runs {entry['command']}, not gpu-bridge"]
    return script_problems("gpu-bridge", args)


def snippet_problems(block: Block) -> list[str]:
    where = block.where()
    try:
        data = (json5 if block.language == "json5" else json).loads(block.text)
    except ValueError as err:
        return [f"{where}: not {block.language}: {err}"]
    if "hosts" in data or "plugins" in data:
        return config_problems(data, where)
    servers = data.get("mcpServers") or data.get("servers") or data.get("mcp", {}).get("servers")
    if servers:
        return [p for entry in servers.values() for p in client_entry_problems(entry, where)]
    if "memory" in data:  # OpenClaw's memory search: the plugin's provider, or an HTTP bridge's /v1
        search = data["memory"]["search"]
        ok = search["provider"] == "gpu-bridge" or search["remote"]["baseUrl"].endswith(":8787/v1")
        return [] if ok else [f"{where}: the memory provider is neither the plugin's nor a bridge"]
    if "tts" in data:  # OpenClaw's text to speech: the plugin's provider, or an HTTP bridge's /v1
        tts = data["tts"]
        ok = tts["provider"] == "gpu-bridge" or tts["providers"][tts["provider"]]["baseUrl"].endswith(":8787/v1")
        return [] if ok else [f"{where}: the speech provider is neither the plugin's nor a bridge"]
    if "tools" in data:  # OpenClaw's media models: the plugin's provider, or an HTTP bridge's /v1
        media = data["tools"]["media"]["models"]
        ok = all(m["provider"] == "gpu-bridge" or m["baseUrl"].endswith(":8787/v1") for m in media)
        return [] if ok else [f"{where}: a media model is neither the plugin's nor a bridge"]
    return [f"{where}: a snippet no check understands (teach tests/test_docs.py what it is)"]


def test_every_json_snippet_parses_and_every_configuration_passes_the_bridge() -> None:
    snippets = [b for b in all_blocks() if b.language in ("json", "json5")]
    assert len(snippets) > 10
    problems = [p for b in snippets for p in snippet_problems(b)]
    assert not problems, "\n".join(problems)


def test_the_snippet_check_finds_a_misspelt_key() -> None:
    bad = Block(README, 1, "json", '{"hosts": [{"url": "http://a:8765", "weigth": 2}]}')
    assert any("weigth" in p for p in snippet_problems(bad))
    assert snippet_problems(Block(README, 1, "json", '{"unknown": 1}'))
    assert snippet_problems(Block(README, 1, "json", '{"mcpServers": {"x": {"command": "gpu-bridge", "args": ["--nope"]}}}'))


def test_python_and_yaml_snippets_parse() -> None:
    for block in all_blocks("python"):
        compile(block.text, block.where(), "exec")
    shipped = {r["metadata"]["name"]: r for f in (ROOT / "deploy" / "k8s").glob("*.yaml")
               for r in yaml.safe_load_all(f.read_text()) if r and r["kind"] == "Service"}
    for block in all_blocks("yaml"):
        service = yaml.safe_load(block.text)
        assert service["kind"] == "Service", f"{block.where()}: teach tests/test_docs.py this manifest"
        twin = shipped.get(service["metadata"]["name"])
        assert twin, f"{block.where()}: not a Service of deploy/k8s"
        for key in ("clusterIP", "selector"):
            assert service["spec"][key] == twin["spec"][key], f"{block.where()}: {key} differs from deploy/k8s"
        assert [p["port"] for p in service["spec"]["ports"]] == [p["port"] for p in twin["spec"]["ports"]]


def test_the_packed_plugin_is_named_with_the_package_version() -> None:
    version = json.loads((ROOT / "package.json").read_text())["version"]
    named = {v for b in all_blocks("bash") for v in re.findall(r"openclaw-gpu-bridge-([\d.]+)\.tgz", b.text)}
    assert named == {version}


# --------------------------------------------------------------------------- names in the prose


def test_every_file_and_python_name_in_the_prose_exists() -> None:
    """`deploy/k8s/`, `gpu_service/ray_app.py`, `gpu_protocol.codec.decode_float32_rows`: each is in the checkout."""
    problems = []
    for page in pages():
        for line, span in code_spans(page):
            if REPO_PATH.match(span) and not any(ROOT.glob(span.removeprefix("./"))):
                problems.append(f"{page.name}:{line}: no file {span}")
            elif DOTTED_NAME.match(span) and not _resolves(span):
                problems.append(f"{page.name}:{line}: no Python name {span}")
    assert not problems, "\n".join(problems)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_the_architecture_page_names_every_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    folders = [d for package in DOCUMENTED_PACKAGES for d in (ROOT / package).iterdir() if (d / "__init__.py").exists()]
    assert not [d.name for d in folders if f"{d.parent.name}/{d.name}/" not in text and f"`{d.name}`" not in text]


# --------------------------------------------------------------------------- reference tables


def test_the_readme_tool_table_lists_every_tool_the_bridge_registers() -> None:
    import asyncio

    from mcp_bridge.bridge import Bridge
    from mcp_bridge.mcp.server import build_server

    server = build_server(Bridge(parse_config({"hosts": [{"url": "http://127.0.0.1:9"}]}, "test")))
    registered = {tool.name for tool in asyncio.run(server.list_tools())}
    documented = {re.sub(r"`", "", row[0]) for row in table(README, "tool")}
    assert documented == registered


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in get_args(annotation) if (m := _model_of(a))), None)


def _field(path: str) -> tuple[type[BaseModel], str] | None:
    """`hosts[].tls` -> (HostConfig, "tls"): the model holding the key, or None when there is no such key."""
    model: type[BaseModel] | None = BridgeConfig
    *parents, last = path.replace("[]", "").split(".")
    for name in parents:
        field = model.model_fields.get(name) if model else None
        model = _model_of(field.annotation) if field else None
    return (model, last) if model and last in model.model_fields else None


def test_the_configuration_table_is_every_key_of_the_bridge() -> None:
    rows = table(ROOT / "docs" / "configuration.md", "key")
    documented: set[tuple[type[BaseModel], str]] = set()
    for key_cell, _, meaning in rows:
        for key in re.findall(r"`([^`]+)`", key_cell):
            found = _field(key)
            assert found, f"configuration.md documents {key}, which the bridge does not take"
            parts = key.split(".")
            documented |= {f for cut in range(1, len(parts) + 1) if (f := _field(".".join(parts[:cut])))}
            nested = _model_of(found[0].model_fields[found[1]].annotation)
            if nested:  # `hosts[]`: {name?, url, ...}; `hosts[].tls`: {verify, caBundle}
                documented |= {(nested, w) for w in re.findall(r"\w+", meaning) if w in nested.model_fields}
    models: set[type[BaseModel]] = {BridgeConfig, *(m for m, _ in documented)}
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if (m, name) not in documented]
    assert not missing, "keys the configuration page does not describe"


def test_the_api_table_is_the_service_routes() -> None:
    rows = table(ROOT / "docs" / "service-api.md", "endpoint")
    documented = set()
    for endpoint, *_ in rows:
        method, path = endpoint.strip("`").split()
        documented.add((method, re.sub(r"\{\w*\}", "{}", path)))
    assert documented <= service_routes(), "endpoints the service does not serve"
    speech = (ROOT / "docs" / "speech.md").read_text()
    missing = [f"{m} {p}" for m, p in sorted(service_routes() - documented) if f"`{m} {p}`" not in speech]
    assert not missing, "routes neither service-api.md's table nor speech.md describes"
