"""Protocol versions: which answer fields and which request fields each version of the wire protocol has.

One integer names the protocol a side speaks (`PROTOCOL_VERSION`); it changes when a release adds
a field to a request or an answer. Release 0.3.0 stated none: version 1. Negotiation (see
docs/compatibility.md):

- the bridge states its version on every request (`routes.PROTOCOL_HEADER`), the service its own on
  every answer and in `/info`;
- the service answers a caller in the caller's version's shape (`shape_answer`): the fields a later
  version added are dropped, so an older bridge, which reads answers strictly, is never surprised;
- the bridge sends a host only the request fields the host's version takes (`fit_request`): a field
  at its default is left out, a field that would change the answer makes the host unfit for the call.

A release that adds a request field or an answer field raises `PROTOCOL_VERSION` and records the
field here; a release never removes or renames a field, nor changes what one means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gpu_protocol import routes
from gpu_protocol.bertscore import BertScoreIdfRequest, BertScoreRequest
from gpu_protocol.embed import EmbedRequest, OpenAIEmbeddingRequest
from gpu_protocol.rerank import RerankRequest, RerankV2Request, TEIRerankRequest
from gpu_protocol.similarity import SimilarityRequest
from gpu_protocol.transcribe import TRANSCRIPTIONS, TRANSLATIONS, TranscriptionJSONRequest

PROTOCOL_VERSION = 2
"""The version this code speaks. 1: release 0.3.0 (no header, no version in /info). 2: /info states
`protocol_version` and `capabilities` (per task its models, and the other names each answers to);
answers are read tolerantly."""
OLDEST_VERSION = 1
RELEASES: dict[int, str] = {1: "0.3.0", 2: "0.4.0"}
"""The first release that spoke each version, for messages (releases.json records their commits)."""

ANSWER_FIELDS_ADDED: dict[int, dict[str, tuple[str, ...]]] = {
    2: {routes.INFO: ("protocol_version", "capabilities", "capabilities.*.names"),
        routes.STATUS: ("queued_by_class",)},
}
"""Version -> path -> the answer fields that version added (an older caller never sees them). A field inside
another is named by its dotted path (`*`: under every key). Only top-level fields are ever dropped: a nested
one goes with its parent for a caller older than the parent, and callers from version 2 on read tolerantly. /status's `queued_by_class` came after 0.4.0 and is listed under 2
all the same: every caller from version 2 on reads answers tolerantly, so only a version-1 caller must not see it."""

REQUEST_MODELS: dict[str, type[BaseModel]] = {
    routes.EMBED: EmbedRequest,
    routes.OPENAI_EMBEDDINGS: OpenAIEmbeddingRequest,
    routes.SIMILARITY: SimilarityRequest,
    routes.BERTSCORE: BertScoreRequest,
    routes.BERTSCORE_IDF: BertScoreIdfRequest,
    routes.RERANK: RerankRequest,
    routes.RERANK_V2: RerankV2Request,
    routes.TEI_RERANK: TEIRerankRequest,
    TRANSCRIPTIONS: TranscriptionJSONRequest,
    TRANSLATIONS: TranscriptionJSONRequest,
}
"""Each compute path's request model: the current version's fields, and their defaults."""

_VERSION_1_REQUESTS: dict[str, frozenset[str]] = {
    routes.EMBED: frozenset(
        {"texts", "model", "normalize", "dimensions", "prompt_name", "prompt", "input_type", "encoding_format"}),
    routes.OPENAI_EMBEDDINGS: frozenset({"input", "model", "encoding_format", "dimensions", "user", "input_type"}),
    routes.SIMILARITY: frozenset({"mode", "texts", "texts_b", "query", "top_k", "model"}),
    routes.BERTSCORE: frozenset({"candidates", "references", "idf", "idf_sentences", "idf_counts",
                                 "rescale_with_baseline", "lang", "model_type", "model", "num_layers"}),
    routes.BERTSCORE_IDF: frozenset({"sentences", "lang", "model_type", "model", "num_layers"}),
    routes.RERANK: frozenset({"model", "query", "documents", "top_n", "return_documents"}),
    routes.TEI_RERANK: frozenset(
        {"query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction", "model"}),
}
"""What release 0.3.0 (version 1) takes, frozen: never derive it from today's models."""


PATHS_ADDED: dict[int, tuple[str, ...]] = {
    2: (TRANSCRIPTIONS, TRANSLATIONS),
}
"""Version -> the compute paths that version added (speech to text): a host of an older version has no
such route, so a request for one never goes to it."""


def path_added_in(path: str) -> int:
    """The first version that serves `path` (the oldest for the paths release 0.3.0 had)."""
    return next((version for version, paths in PATHS_ADDED.items() if path in paths), OLDEST_VERSION)


def _fields(model: type[BaseModel]) -> frozenset[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        names.update(c for c in choices or () if isinstance(c, str))
    return frozenset(names)


REQUEST_FIELDS: dict[int, dict[str, frozenset[str]]] = {
    1: _VERSION_1_REQUESTS,
    PROTOCOL_VERSION: {path: _fields(model) for path, model in REQUEST_MODELS.items()},
}
"""Version -> path -> the top-level request fields that version takes (the current one from its models)."""


def stated_version(header: str | None) -> int:
    """The version a side stated in `routes.PROTOCOL_HEADER`: absent or unreadable is 1 (0.3.0 sent none)."""
    try:
        return max(OLDEST_VERSION, int(header)) if header is not None else OLDEST_VERSION
    except ValueError:
        return OLDEST_VERSION


def caller_version(header: str | None) -> int:
    """The version to answer a caller in: the one it stated, and a later one than ours as ours
    (from version 2 on, readers ignore what they do not know)."""
    return min(stated_version(header), PROTOCOL_VERSION)


def release_of(version: int) -> str:
    return RELEASES.get(version, f"protocol {version}")


# --------------------------------------------------------------------------- answers (the service)


def answer_fields_to_drop(path: str, version: int) -> tuple[str, ...]:
    """The fields of `path`'s answer that a caller of `version` does not know."""
    return tuple(
        name
        for added_in, paths in ANSWER_FIELDS_ADDED.items() if added_in > version
        for name in paths.get(path, ()) if "." not in name
    )


def shape_answer(path: str, body: Any, version: int) -> Any:
    """`body` (a JSON answer of `path`) as a caller of `version` knows it: later versions' fields dropped."""
    drop = answer_fields_to_drop(path, version)
    if not drop or not isinstance(body, dict):
        return body
    return {k: v for k, v in body.items() if k not in drop}


# --------------------------------------------------------------------------- requests (the bridge)


class FieldUnsupported(Exception):
    """A request needs fields the host's protocol version does not take (`fields`)."""

    def __init__(self, fields: list[str], version: int) -> None:
        self.fields = fields
        self.version = version
        super().__init__(
            f"protocol {version} ({release_of(version)}), which has no " + ", ".join(f"`{f}`" for f in fields)
        )


def request_fields(path: str, version: int) -> frozenset[str] | None:
    """The request fields `version` takes on `path`; None when the path has no table (sent as is)."""
    known = [v for v in REQUEST_FIELDS if v <= version]
    table = REQUEST_FIELDS[max(known)] if known else REQUEST_FIELDS[OLDEST_VERSION]
    return table.get(path)


def fit_request(path: str, body: Mapping[str, Any], version: int) -> dict[str, Any]:
    """`body` as a host of `version` takes it: a field it does not know is left out when it holds the
    field's default (the host does the same without it); FieldUnsupported when one would change the answer,
    or when `version` has no such path at all (named as the one missing field)."""
    if path_added_in(path) > version:
        raise FieldUnsupported([path], version)
    accepted = request_fields(path, version)
    if accepted is None:
        return dict(body)
    model = REQUEST_MODELS[path]
    unknown = [name for name in body if name not in accepted]
    needed = [name for name in unknown if not _is_default(model, name, body[name])]
    if needed:
        raise FieldUnsupported(needed, version)
    return {k: v for k, v in body.items() if k not in unknown}


def _is_default(model: type[BaseModel], name: str, value: Any) -> bool:
    info = model.model_fields.get(name)
    if info is None:
        return value is None
    return value == info.get_default(call_default_factory=True)
