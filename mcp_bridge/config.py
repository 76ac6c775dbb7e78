"""Bridge configuration: the same shape as the OpenClaw plugin config, from wherever the user put it.

Sources, first found wins for the base config:
1. `--config FILE` (a plugin config object, or a whole OpenClaw config file),
2. `GPU_BRIDGE_CONFIG`: a path, or inline JSON,
3. OpenClaw's own config file, `plugins.entries.openclaw-gpu-bridge.config`
   (`$OPENCLAW_CONFIG_PATH`, default `~/.openclaw/openclaw.json`; JSON5),
then single settings from the environment (`GPU_BRIDGE_URLS`, `GPU_BRIDGE_API_KEY`,
`GPU_BRIDGE_LOAD_BALANCING`, `GPU_BRIDGE_TIMEOUT`) and flags override fields of it.

The model below is the single definition of what may be configured; the JSON Schema
in `openclaw.plugin.json` is checked against it by the tests, key for key, both ways.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpu_protocol import validation
from gpu_protocol.limits import DEFAULT_LIMITS
from mcp_bridge.protocols import HOST_TYPES

PLUGIN_ID = "openclaw-gpu-bridge"


class ConfigError(ValueError):
    """Invalid or missing configuration; the message names the field and the source."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TlsConfig(_Config):
    verify: bool = Field(default=True, description="Verify the host's certificate (keep on outside a lab).")
    caBundle: str | None = Field(default=None, description="PEM file of CAs to trust, e.g. for a self-signed host.")


class HostConfig(_Config):
    name: str | None = Field(default=None, max_length=64, description="Label in status output; the URL's host:port by default.")
    url: str = Field(description="Base URL of the host, e.g. http://192.168.1.20:8765")
    apiKey: str | None = Field(default=None, description="Key for this host (else the pool's apiKey).", repr=False)
    auth: Literal["x-api-key", "bearer"] | None = Field(
        default=None,
        description="How the key is sent: `x-api-key` (X-API-Key: <key>) or `bearer` (Authorization: Bearer "
        "<key>). Default: x-api-key for gpu-service hosts, bearer for openai/tei hosts.",
    )
    type: str = Field(
        default="gpu-service",
        description="gpu-service: our service (all tools). openai: any OpenAI-compatible /v1/embeddings "
        "(Infinity, vLLM, ...). tei: text-embeddings-inference's native API. openai and tei: embeddings only.",
    )
    model: str | None = Field(
        default=None, description="Model to request from an openai host; for a tei host (one model), its name in results."
    )
    rerank: bool = Field(
        default=False,
        description="An openai or tei host that also serves a reranker (Cohere-style /v1/rerank: Infinity, vLLM, "
        "Jina; TEI's /rerank): use it for gpu_rerank. gpu-service hosts always rerank.",
    )
    transcribe: bool = Field(
        default=False,
        description="An openai host that also serves OpenAI's /v1/audio/transcriptions (speaches, vLLM's Whisper "
        "endpoint): use it for gpu_transcribe. gpu-service hosts always transcribe; tei hosts never do.",
    )
    speak: bool = Field(
        default=False,
        description="An openai host that also serves OpenAI's /v1/audio/speech (speaches, Kokoro-FastAPI): use it "
        "for gpu_speak and the bridge's /v1/audio/speech. gpu-service hosts speak when their /info lists `speak`; "
        "tei hosts never do.",
    )
    weight: float = Field(default=1.0, gt=0, le=1000, description="Relative capacity for balancing.")
    maxConcurrent: int | None = Field(default=None, ge=1, le=10_000, description="Requests in flight at most.")
    timeout: float | None = Field(default=None, gt=0, le=3600, description="Per-request timeout in seconds.")
    tls: TlsConfig | None = None
    cluster: bool = Field(
        default=False,
        description="The URL is a proxy in front of many replicas (Ray Serve, a Kubernetes Service): 408 is "
        "retried, a retry may go to the same URL, and ejection needs 3x failureThreshold failures in a row.",
    )
    discover: Literal["dns"] | None = Field(
        default=None,
        description="dns: the URL's host name is resolved (A/AAAA; a Kubernetes headless Service) and every "
        "address becomes a host <name>@<ip> with this entry's settings; re-resolved every "
        "healthCheckIntervalSeconds.",
    )

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in HOST_TYPES:
            raise ValueError(f"unknown host type {value!r}; one of: {', '.join(HOST_TYPES)}")
        return value

    @model_validator(mode="after")
    def _transcribes(self) -> HostConfig:
        if self.transcribe and self.type == "tei":
            raise ValueError("transcribe: true is for openai hosts (an OpenAI-compatible speech server); "
                             "text-embeddings-inference does not transcribe")
        if self.speak and self.type == "tei":
            raise ValueError("speak: true is for openai hosts (an OpenAI-compatible speech server such as speaches "
                             "or Kokoro-FastAPI); text-embeddings-inference does not speak")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url {value!r} must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @property
    def label(self) -> str:
        return self.name or urlsplit(self.url).netloc

    @property
    def auth_header(self) -> Literal["x-api-key", "bearer"]:
        """How this host's key is sent: `auth`, else what servers of its type expect."""
        return self.auth or HOST_TYPES[self.type].default_auth


class ModelsConfig(_Config):
    embed: str | None = Field(default=None, description="Embedding model when a call names none.")
    bertscore: str | None = Field(default=None, description="BERTScore model when a call names none.")


LIMIT_SETTINGS = ("limits.maxBatchSize", "limits.maxTextLength")
"""The settings of the bridge's two text limits, named in its refusals."""


class LimitsConfig(_Config):
    maxBatchSize: int = Field(default=20_000, ge=1, le=1_000_000, description="Texts (or pairs) per tool call.")
    maxTextLength: int = Field(
        default=DEFAULT_LIMITS.max_text_chars, ge=1, le=10_000_000, description="Characters per text."
    )
    maxResultMB: float = Field(
        default=8.0, ge=0.01, le=1024,
        description="Largest tool result, in MiB. MCP clients built on the TypeScript SDK (OpenClaw, Claude "
        "Desktop, the Inspector) close a stdio connection on any message over 10 MiB.",
    )

    def check(self, field: str, texts: Sequence[str] | str) -> None:
        """`texts` (a list, or one text such as a query) within these limits and non-blank: the wire's one
        texts check (`gpu_protocol.validation`), for every entry point of the bridge (the MCP tools, `/v1`).
        Raises `TextsRejected` naming the field, the index and the setting to change."""
        if isinstance(texts, str):
            validation.check_text(texts, field, max_text_chars=self.maxTextLength, setting=LIMIT_SETTINGS[1])
        else:
            validation.check_texts(texts, field, max_texts=self.maxBatchSize, max_text_chars=self.maxTextLength,
                                   holder="this bridge", settings=LIMIT_SETTINGS)


class AudioConfig(_Config):
    allowedDirs: list[str] = Field(
        default_factory=list,
        description="Directories gpu_transcribe may read audio files from (its `path` argument), with their "
        "subdirectories; symlinks and .. that lead out of them are refused. Empty: no file is read (send "
        "audio_base64 instead).",
    )
    maxMB: float = Field(default=25.0, gt=0, le=1024, description="Largest audio file, in MiB (OpenAI's limit: 25).")
    splitAboveSeconds: float = Field(
        default=180.0, ge=0, le=86_400,
        description="Recordings longer than this are cut at silences and the parts transcribed on several hosts "
        "at once (needs the bridge's `speech` extra, PyAV); shorter ones go to one host whole. 0: never split.",
    )
    outputDir: str | None = Field(
        default=None, min_length=1,
        description="A directory gpu_speak writes its audio files to (and returns their paths: what an agent "
        "attaches to a message). Not set: gpu_speak writes no file and returns the audio in its result only.",
    )


class BridgeConfig(_Config):
    hosts: list[HostConfig] = Field(default_factory=list)
    serviceUrl: str | None = Field(default=None, description="v0.1: a single host's URL.")
    url: str | None = Field(default=None, description="v0.1: alias of serviceUrl.")
    apiKey: str | None = Field(default=None, description="Key for hosts that define none.", repr=False)
    loadBalancing: Literal["round-robin", "least-busy"] = "least-busy"
    healthCheckIntervalSeconds: float = Field(default=30.0, ge=0.1, le=86_400)
    healthCheckTimeoutSeconds: float = Field(default=3.0, gt=0, le=60)
    unhealthyThreshold: int = Field(default=2, ge=1, le=100)
    healthyThreshold: int = Field(default=1, ge=1, le=100)
    timeout: float = Field(default=45.0, gt=0, le=3600, description="Deadline of one tool call, seconds.")
    failureThreshold: int = Field(default=3, ge=1, le=100, description="Consecutive failures that eject a host.")
    ejectionSeconds: float = Field(default=30.0, gt=0, le=3600, description="First ejection; grows with each.")
    maxEjectionSeconds: float = Field(default=300.0, gt=0, le=86_400)
    retryBudgetPercent: float = Field(default=20.0, ge=0, le=100)
    shardSize: int = Field(default=256, ge=1, le=100_000, description="Texts per request to a host.")
    hedging: bool = Field(default=False, description="Send a slow request to a second host as well.")
    bridgeCommand: str | None = Field(
        default=None, min_length=1,
        description="OpenClaw plugin only: the gpu-bridge executable its memory embedding provider starts "
        "(default: gpu-bridge on PATH). The bridge itself ignores it.",
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> BridgeConfig:
        labels = [h.label for h in self.pool_hosts()]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"hosts: names must be unique, repeated: {', '.join(dupes)}")
        return self

    def pool_hosts(self) -> list[HostConfig]:
        """The hosts to use: `hosts`, else the v0.1 single URL."""
        if self.hosts:
            return self.hosts
        legacy = self.serviceUrl or self.url
        return [HostConfig(url=legacy, name="default")] if legacy else []

    def key_for(self, host: HostConfig) -> str | None:
        return host.apiKey or self.apiKey


def _describe(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the README's configuration reference)"
        parts.append(f"{loc}: {msg}")
    return f"invalid configuration in {source}: " + "; ".join(parts)


def parse_config(data: Mapping[str, Any], source: str) -> BridgeConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid configuration in {source}: expected a JSON object")
    try:
        return BridgeConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def _read_json(path: Path, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json5" or "openclaw" in path.name:
            import json5

            return json5.loads(text)
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None


def plugin_section(data: Any) -> Any:
    """The plugin's own config inside an OpenClaw config file, or `data` itself if it is not one."""
    if isinstance(data, Mapping) and "plugins" in data:
        entries = (data.get("plugins") or {}).get("entries") or {}
        entry = entries.get(PLUGIN_ID) or {}
        return entry.get("config") or {}
    return data


def openclaw_config_path(env: Mapping[str, str]) -> Path:
    """Where OpenClaw keeps its config: `$OPENCLAW_CONFIG_PATH`, else `$OPENCLAW_STATE_DIR/openclaw.json`,
    else `~/.openclaw/openclaw.json` (OpenClaw passes its servers only `HOME`, so that is the usual case)."""
    if env.get("OPENCLAW_CONFIG_PATH"):
        return Path(env["OPENCLAW_CONFIG_PATH"]).expanduser()
    if env.get("OPENCLAW_STATE_DIR"):
        return Path(env["OPENCLAW_STATE_DIR"]).expanduser() / "openclaw.json"
    home = env.get("OPENCLAW_HOME") or env.get("HOME") or str(Path.home())
    return Path(home) / ".openclaw" / "openclaw.json"


def load_config(
    config_file: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    urls: list[str] | None = None,
    load_balancing: str | None = None,
    timeout: float | None = None,
) -> tuple[BridgeConfig, str]:
    """The effective configuration and a description of where it came from."""
    env = os.environ if env is None else env
    data: Any = {}
    source = "defaults (no configuration found)"
    inline = env.get("GPU_BRIDGE_CONFIG", "").strip()
    if config_file:
        source = f"--config {config_file}"
        data = plugin_section(_read_json(Path(config_file).expanduser(), source))
    elif inline:
        if inline.startswith("{"):
            source = "GPU_BRIDGE_CONFIG (inline JSON)"
            try:
                data = plugin_section(json.loads(inline))
            except ValueError as exc:
                raise ConfigError(f"{source} is not valid JSON: {exc}") from None
        else:
            source = f"GPU_BRIDGE_CONFIG={inline}"
            data = plugin_section(_read_json(Path(inline).expanduser(), source))
    else:
        path = openclaw_config_path(env)
        if path.is_file():
            source = f"OpenClaw config {path} (plugins.entries.{PLUGIN_ID}.config)"
            data = plugin_section(_read_json(path, source))
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid configuration in {source}: expected a JSON object")
    data = dict(data)
    overrides: list[str] = []
    env_urls = [u.strip() for u in env.get("GPU_BRIDGE_URLS", "").split(",") if u.strip()]
    if urls or env_urls:
        data["hosts"] = [{"url": u} for u in (urls or env_urls)]
        data.pop("serviceUrl", None)
        data.pop("url", None)
        overrides.append("--url" if urls else "GPU_BRIDGE_URLS")
    if env.get("GPU_BRIDGE_API_KEY"):
        data["apiKey"] = env["GPU_BRIDGE_API_KEY"]
        overrides.append("GPU_BRIDGE_API_KEY")
    lb = load_balancing or env.get("GPU_BRIDGE_LOAD_BALANCING")
    if lb:
        data["loadBalancing"] = lb
        overrides.append("load balancing")
    t = timeout if timeout is not None else env.get("GPU_BRIDGE_TIMEOUT")
    if t is not None and t != "":
        data["timeout"] = t
        overrides.append("timeout")
    if overrides:
        source += " + " + ", ".join(overrides)
    return parse_config(data, source), source


def redactor(config: BridgeConfig) -> Callable[[str], str]:
    """Hides the configured keys (the bridge's own and every host's) in text bound for a client:
    tool errors, OpenAI-API errors, health rows."""
    secrets = [s for s in [config.apiKey, *(h.apiKey for h in config.hosts)] if s]

    def redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact
