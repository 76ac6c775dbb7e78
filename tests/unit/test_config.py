"""Configuration: every field, the legacy forms, bad configs, the sources and their order,
and the OpenClaw manifest's schema checked against the config model both ways."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from mcp_bridge.config import PLUGIN_ID, BridgeConfig, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "openclaw.plugin.json").read_text())
SCHEMA = MANIFEST["configSchema"]
SEED_README = ROOT.parent / "shared" / "seeds" / "README-v0.2.md"

FULL = {
    "hosts": [
        {"name": "rtx-3090", "url": "http://10.0.0.2:8765", "apiKey": "k1", "weight": 2, "maxConcurrent": 4,
         "timeout": 30, "tls": {"verify": True, "caBundle": "/etc/ssl/ca.pem"}},
        {"name": "tei", "url": "https://tei.example:443/", "type": "tei", "model": "bge-small", "auth": "x-api-key"},
    ],
    "apiKey": "fallback",
    "loadBalancing": "round-robin",
    "healthCheckIntervalSeconds": 10,
    "healthCheckTimeoutSeconds": 2,
    "unhealthyThreshold": 3,
    "healthyThreshold": 2,
    "timeout": 60,
    "failureThreshold": 5,
    "ejectionSeconds": 20,
    "maxEjectionSeconds": 120,
    "retryBudgetPercent": 10,
    "shardSize": 128,
    "hedging": True,
    "models": {"embed": "all-MiniLM-L6-v2", "bertscore": "roberta-large"},
    "limits": {"maxBatchSize": 100, "maxTextLength": 10000},
}


def seed_examples() -> list[dict[str, Any]]:
    """The v0.2 and v0.1 plugin configs from the seed README (their plugin sections)."""
    if SEED_README.exists():
        blocks = re.findall(r"```json\n(.*?)```", SEED_README.read_text(), re.S)
        configs = [json.loads(b) for b in blocks]
        return [next(iter(c["plugins"].values())) for c in configs if "plugins" in c]
    return [  # the same two examples, for a checkout without shared/
        {"hosts": [{"name": "rtx-2080ti", "url": "http://192.168.177.3:8765", "apiKey": "gpu-key-1"}],
         "loadBalancing": "least-busy", "healthCheckIntervalSeconds": 30, "timeout": 45,
         "models": {"embed": "all-MiniLM-L6-v2", "bertscore": "microsoft/deberta-xlarge-mnli"}},
        {"serviceUrl": "http://192.168.177.3:8765", "apiKey": "gpu-key", "timeout": 45},
    ]


def test_every_documented_field_parses() -> None:
    cfg = parse_config(FULL, "test")
    assert [h.label for h in cfg.pool_hosts()] == ["rtx-3090", "tei"]
    assert cfg.hosts[1].url == "https://tei.example:443"
    assert cfg.key_for(cfg.hosts[0]) == "k1" and cfg.key_for(cfg.hosts[1]) == "fallback"
    assert cfg.hosts[0].tls is not None and cfg.hosts[0].tls.caBundle == "/etc/ssl/ca.pem"
    assert cfg.limits.maxBatchSize == 100 and cfg.models.bertscore == "roberta-large"
    assert [h.auth_header for h in cfg.hosts] == ["x-api-key", "x-api-key"]
    assert parse_config({"hosts": [{"url": "http://a", "type": "openai"}]}, "t").hosts[0].auth_header == "bearer"
    jsonschema.validate(FULL, SCHEMA)


@pytest.mark.parametrize("legacy", [{"serviceUrl": "http://h:8765"}, {"url": "http://h:8765/"}])
def test_v01_single_host_forms(legacy: dict[str, str]) -> None:
    cfg = parse_config({**legacy, "apiKey": "k"}, "test")
    (host,) = cfg.pool_hosts()
    assert host.url == "http://h:8765" and cfg.key_for(host) == "k"


@pytest.mark.parametrize("example", seed_examples(), ids=["v0.2", "v0.1"])
def test_seed_examples_are_valid_for_manifest_and_model(example: dict[str, Any]) -> None:
    jsonschema.validate(example, SCHEMA)
    parse_config(example, "seed")


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"hosts": [{"url": "ftp://x"}]}, "hosts.0.url"),
        ({"hosts": [{"name": "a"}]}, "hosts.0.url"),
        ({"hosts": [{"url": "http://x", "apikey": "typo"}]}, "hosts.0.apikey"),
        ({"loadBalancing": "random"}, "loadBalancing"),
        ({"timeout": -1}, "timeout"),
        ({"limits": {"maxBatchSize": 0}}, "limits.maxBatchSize"),
        ({"hosts": [{"url": "http://a", "weight": 0}]}, "hosts.0.weight"),
        ({"hosts": [{"url": "http://a", "type": "grpc"}]}, "hosts.0.type"),
        ({"hosts": [{"url": "http://a", "auth": "basic"}]}, "hosts.0.auth"),
        ({"surprise": True}, "surprise"),
        ({"hosts": [{"url": "http://a", "name": "x"}, {"url": "http://b", "name": "x"}]}, "unique"),
    ],
)
def test_bad_configs_name_the_field(bad: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(bad, "my.json")
    assert named in str(err.value) and "my.json" in str(err.value)
    if named != "unique":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        target = sub.get("items", sub)
        if target.get("type") == "object":
            assert target.get("additionalProperties") is False, f"{prefix + name} must be strict"
            keys |= _schema_keys(target, prefix + name + ".")
    return keys


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= _model_keys(candidate, prefix + name + ".")
    return keys


def test_manifest_schema_and_config_model_have_the_same_keys() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert _schema_keys(SCHEMA) == _model_keys(BridgeConfig)


def test_manifest_follows_openclaw_native_format() -> None:
    allowed_top = {"id", "configSchema", "name", "description", "version", "uiHints", "mcpServers", "contracts"}
    assert set(MANIFEST) <= allowed_top and {"id", "configSchema"} <= set(MANIFEST)
    assert MANIFEST["id"] == PLUGIN_ID
    server = MANIFEST["mcpServers"]["gpu-bridge"]
    assert server["transport"] == "stdio" and server["command"]
    # the memory embedding, speech-to-text and text-to-speech providers registered by openclaw/index.js (OpenClaw
    # refuses an undeclared one)
    assert MANIFEST["contracts"] == {"embeddingProviders": ["gpu-bridge"], "mediaUnderstandingProviders": ["gpu-bridge"],
                                     "speechProviders": ["gpu-bridge"]}
    assert 'export const PROVIDER_ID = "gpu-bridge";' in (ROOT / "openclaw" / "bridge.js").read_text()
    sensitive = {k for k, v in MANIFEST["uiHints"].items() if v.get("sensitive")}
    assert sensitive == {"apiKey", "hosts.*.apiKey"}
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_plugin_package_matches_the_manifest_and_the_python_package() -> None:
    """OpenClaw installs the plugin through package.json (its `openclaw.extensions` entry)."""
    import tomllib

    from mcp_bridge import __version__

    package = json.loads((ROOT / "package.json").read_text())
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert package["name"] == python["name"] == PLUGIN_ID
    assert package["version"] == MANIFEST["version"] == python["version"] == __version__
    for entry in package["openclaw"]["extensions"]:
        assert (ROOT / entry).is_file() and entry.lstrip("./") in package["files"]
    assert "openclaw.plugin.json" in package["files"]
    # the entry's own modules (import "./bridge.js") travel with it
    assert {f"openclaw/{js.name}" for js in (ROOT / "openclaw").glob("*.js")} <= set(package["files"])


def test_the_service_distribution_has_the_same_version_and_they_pin_each_other() -> None:
    """Two distributions from one checkout (the bridge + gpu_protocol; the service), released together."""
    import tomllib

    from gpu_service import __version__ as service_version
    from mcp_bridge import __version__

    bridge = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    service = tomllib.loads((ROOT / "service" / "pyproject.toml").read_text())["project"]
    assert service["name"] == "openclaw-gpu-service"
    assert service["version"] == bridge["version"] == service_version == __version__
    assert f"{PLUGIN_ID}=={__version__}" in service["dependencies"], "the service needs gpu_protocol of its version"
    assert bridge["optional-dependencies"]["service"] == [f"openclaw-gpu-service=={__version__}"]
    assert not any(d.split("[")[0].startswith(("torch", "fastapi")) for d in bridge["dependencies"])


def test_mcp_json_declares_the_same_server() -> None:
    bundle = json.loads((ROOT / ".mcp.json").read_text())
    assert bundle["mcpServers"]["gpu-bridge"]["command"] == MANIFEST["mcpServers"]["gpu-bridge"]["command"]


# --------------------------------------------------------------------------- sources


def write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_sources_and_precedence(tmp_path: Path) -> None:
    file_cfg = write(tmp_path / "file.json", {"hosts": [{"url": "http://from-file:1"}]})
    env_file = write(tmp_path / "env.json", {"hosts": [{"url": "http://from-env-file:1"}]})
    openclaw = write(
        tmp_path / "openclaw.json",
        "// JSON5, as OpenClaw writes it\n{plugins: {entries: {'openclaw-gpu-bridge': {enabled: true, "
        "config: {hosts: [{url: 'http://from-openclaw:1'}], timeout: 12,},},},},}",
    )
    env = {"OPENCLAW_CONFIG_PATH": openclaw}

    def url(**kw: Any) -> str:
        return load_config(**kw)[0].pool_hosts()[0].url

    assert url(env=env) == "http://from-openclaw:1"
    assert load_config(env=env)[0].timeout == 12
    assert url(env={**env, "GPU_BRIDGE_CONFIG": env_file}) == "http://from-env-file:1"
    inline = json.dumps({"serviceUrl": "http://inline:1"})
    assert url(env={**env, "GPU_BRIDGE_CONFIG": inline}) == "http://inline:1"
    assert url(config_file=file_cfg, env={**env, "GPU_BRIDGE_CONFIG": inline}) == "http://from-file:1"
    # single settings override the base config
    cfg, source = load_config(config_file=file_cfg, env={"GPU_BRIDGE_URLS": "http://u1:1,http://u2:2",
                                                        "GPU_BRIDGE_API_KEY": "k", "GPU_BRIDGE_TIMEOUT": "9"})
    assert [h.url for h in cfg.pool_hosts()] == ["http://u1:1", "http://u2:2"] and cfg.apiKey == "k"
    assert cfg.timeout == 9 and "GPU_BRIDGE_URLS" in source
    assert url(config_file=file_cfg, urls=["http://flag:1"], env={"GPU_BRIDGE_URLS": "http://env:1"}) == "http://flag:1"


def test_openclaw_config_locations(tmp_path: Path) -> None:
    section = {"plugins": {"entries": {PLUGIN_ID: {"config": {"url": "http://%s:1"}}}}}
    for where in ("home", "state", "explicit"):
        (tmp_path / where / ".openclaw").mkdir(parents=True)
        write(tmp_path / where / ".openclaw" / "openclaw.json", json.dumps(section) % where)
    home = {"HOME": str(tmp_path / "home")}
    state = {**home, "OPENCLAW_STATE_DIR": str(tmp_path / "state" / ".openclaw")}
    explicit = {**state, "OPENCLAW_CONFIG_PATH": str(tmp_path / "explicit" / ".openclaw" / "openclaw.json")}
    for env, name in [(home, "home"), (state, "state"), (explicit, "explicit")]:
        assert load_config(env=env)[0].pool_hosts()[0].url == f"http://{name}:1"


def test_whole_openclaw_file_as_config_file(tmp_path: Path) -> None:
    path = write(tmp_path / "openclaw.json", {"plugins": {"entries": {PLUGIN_ID: {"config": {"url": "http://x:1"}}}}})
    assert load_config(config_file=path, env={})[0].pool_hosts()[0].url == "http://x:1"


def test_no_config_anywhere_gives_empty_pool(tmp_path: Path) -> None:
    cfg, source = load_config(env={"HOME": str(tmp_path)})
    assert cfg.pool_hosts() == [] and "no configuration" in source


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(config_file=str(tmp_path / "missing.json"), env={})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(config_file=write(tmp_path / "bad.json", "{nope"), env={})
    with pytest.raises(ConfigError, match="hosts.0.url"):
        load_config(env={"GPU_BRIDGE_CONFIG": '{"hosts": [{}]}'})


def test_api_keys_never_appear_in_repr() -> None:
    cfg = parse_config({"hosts": [{"url": "http://a", "apiKey": "topsecret-1"}], "apiKey": "topsecret-2"}, "t")
    assert "topsecret" not in repr(cfg)
