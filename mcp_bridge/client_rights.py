"""The bridge's `clients`: who may call it over HTTP, with which token, what, and how much (docs/sharing.md).

Each client has a name (its tenant), a token (or the environment variable that holds it), the highest
priority class it may use, the MCP tools it may call (the `/v1` routes follow the same names), the models it
may ask for per task, and its quotas. Everything left out is unlimited, so `{"name": "me", "token": "..."}`
is a client with every right, like the single `--auth-token`.

Only the shape is checked here; tokens named by `tokenEnv` are read when an HTTP bridge starts
(`mcp_bridge.access.identity`), so a stdio bridge sharing the config never needs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gpu_protocol.priority import MAX_TENANT_CHARS, Priority

DIAGNOSTIC_TOOLS = ("gpu_health", "gpu_info", "gpu_status")
"""Always allowed to every known client: they read the pool's state and run nothing on a GPU."""
WORK_TOOLS = ("gpu_embed", "gpu_bertscore", "gpu_similarity", "gpu_rerank", "gpu_transcribe", "gpu_speak")
"""The tools a client's `tools` list grants (the `/v1` routes map onto them)."""
TOOL_NAMES = (*DIAGNOSTIC_TOOLS, *WORK_TOOLS)
"""Every MCP tool name a `tools` list may name (the server registers a subset when a feature is absent)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ModelList = list[str] | None


class ClientModels(_Strict):
    """The models a client may ask for, per task; a task left out: any. A call naming no model gets the first."""

    embed: ModelList = Field(default=None, min_length=1, description="Embedding models (gpu_embed, gpu_similarity, "
                             "/v1/embeddings).")
    rerank: ModelList = Field(default=None, min_length=1, description="Rerankers (gpu_rerank, /v1/rerank, /v2/rerank).")
    bertscore: ModelList = Field(default=None, min_length=1, description="BERTScore models (gpu_bertscore).")
    transcribe: ModelList = Field(default=None, min_length=1, description="Speech-to-text models (gpu_transcribe, "
                                  "/v1/audio/transcriptions and /translations).")
    speak: ModelList = Field(default=None, min_length=1, description="Speech synthesis models (gpu_speak, "
                             "/v1/audio/speech).")


class ClientConfig(_Strict):
    name: str = Field(min_length=1, max_length=MAX_TENANT_CHARS,
                      description="The client's name: its tenant in fair sharing, status and logs.")
    token: str | None = Field(default=None, min_length=8, description="Its bearer token.", repr=False)
    tokenEnv: str | None = Field(default=None, min_length=1,
                                 description="The environment variable holding its token (instead of `token`).")
    priority: Priority = Field(default="interactive",
                               description="The highest class it may use; a batch client's calls are all batch.")
    tools: list[str] | None = Field(default=None, description="The MCP tools it may call, and the /v1 routes of "
                                    "the same names; all when omitted. gpu_health/gpu_info/gpu_status: always.")
    models: ClientModels = Field(default_factory=ClientModels)
    requestsPerMinute: int | None = Field(default=None, ge=1, le=1_000_000, description="Calls per minute at most.")
    itemsPerMinute: int | None = Field(default=None, ge=1, le=100_000_000,
                                       description="Items per minute at most: texts, documents, pairs, audio files.")
    maxInFlight: int | None = Field(default=None, ge=1, le=100_000, description="Calls running at once at most.")

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if value != value.strip() or not value.isprintable():
            raise ValueError("a client's name must be printable, without surrounding spaces")
        return value

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, value: list[str] | None) -> list[str] | None:
        unknown = [t for t in value or () if t not in TOOL_NAMES]
        if unknown:
            raise ValueError(f"unknown tool(s) {', '.join(map(repr, unknown))}; one of: {', '.join(TOOL_NAMES)}")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> ClientConfig:
        if (self.token is None) == (self.tokenEnv is None):
            raise ValueError(f"client {self.name!r}: give exactly one of token and tokenEnv")
        return self


def check_clients(clients: Sequence[ClientConfig]) -> None:
    """Names unique, and tokens written into the config unique (`tokenEnv` ones are checked when read)."""
    names = [c.name for c in clients]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"clients: names must be unique, repeated: {', '.join(repeated)}")
    tokens = [c.token for c in clients if c.token is not None]
    shared = sorted({c.name for c in clients if c.token is not None and tokens.count(c.token) > 1})
    if shared:  # the names, never the token
        raise ValueError(f"clients: each client needs its own token; the same token is given to {', '.join(shared)}")
