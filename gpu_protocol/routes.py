"""Every path and header name of the protocol, spelled once for the service and the bridge."""

from __future__ import annotations

# --------------------------------------------------------------------------- our GPU service

HEALTH = "/health"
"""Liveness and readiness; needs no key."""
INFO = "/info"
STATUS = "/status"
METRICS = "/metrics"
EMBED = "/embed"
SIMILARITY = "/similarity"
BERTSCORE = "/bertscore"
BERTSCORE_IDF = "/bertscore/idf"
CANCEL = "/cancel/{request_id}"
"""Cancel the request sent with this `X-Request-Id`; its unstarted work is dropped."""

# OpenAI-, Cohere/Jina- and TEI-compatible routes the service also serves.
OPENAI_PREFIX = "/v1"
"""What OpenAI-compatible servers put before their routes (a base URL that ends in /v1 includes it)."""
OPENAI_EMBEDDINGS = OPENAI_PREFIX + "/embeddings"
RERANK = OPENAI_PREFIX + "/rerank"
RERANK_V2 = "/v2/rerank"
"""Cohere's v2 rerank (what `cohere.ClientV2` calls)."""
TEI_RERANK = "/rerank"

OPEN_PATHS = frozenset({HEALTH})
"""Paths that need no API key."""
OPENAI_SHAPED_PREFIX = OPENAI_PREFIX + "/audio/"
"""The service's routes whose failures also read in OpenAI's error shape (speech synthesis, transcription): an
OpenAI client reads `error`, a bridge of any release `detail`."""


def cancel_path(request_id: str) -> str:
    return CANCEL.format(request_id=request_id)


# --------------------------------------------------------------------------- other servers the bridge speaks to

OPENAI_MODELS = OPENAI_PREFIX + "/models"
"""An OpenAI-compatible server's model list: its liveness check."""
TEI_EMBED = "/embed"
"""text-embeddings-inference's native embedding route (`{"inputs": [...]}` -> a list of vectors)."""
TEI_HEALTH = "/health"

# --------------------------------------------------------------------------- headers

REQUEST_ID_HEADER = "X-Request-Id"
"""Names a compute request so that `POST /cancel/{id}` can drop it."""
API_KEY_HEADER = "X-API-Key"
AUTHORIZATION_HEADER = "Authorization"
PROTOCOL_HEADER = "X-GPU-Protocol"
"""The wire protocol version (`gpu_protocol.versions`): the bridge states its own on every request, the
service its own on every answer. A request without it is from a 0.3.0 bridge (version 1)."""
RETRY_AFTER_HEADER = "Retry-After"
"""With 429/503: seconds to wait before trying this server again."""


TIMEOUT_HEADER = "X-GPU-Timeout"
"""Seconds the caller waits for this answer (the bridge sends each attempt's): a service refuses batch work its
backlog cannot finish by then (429 with Retry-After) rather than compute an answer nobody reads, and gives up on
the rest a moment before the caller does, so its answer arrives. A 0.4.0 service ignores it."""
MAX_TIMEOUT_S = 86_400.0
TOO_LATE_HEADER = "X-GPU-Too-Late"
"""On a 429: the request would not finish within the caller's `X-GPU-Timeout` behind the work queued now. The same
request with less time left would not either, so a bridge does not try it on that host again in the same call
(its `Retry-After` is for a caller who comes back with its whole wait)."""


def timeout_headers(seconds: float) -> dict[str, str]:
    """The `X-GPU-Timeout` header for a wait of `seconds` (milliseconds kept)."""
    return {TIMEOUT_HEADER: f"{max(0.001, seconds):.3f}"}


def parse_timeout(value: str | None) -> float | None:
    """The seconds an `X-GPU-Timeout` header gives; None when absent. Raises ValueError naming what is allowed."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_TIMEOUT_S:  # also false for nan
        raise ValueError(f"{TIMEOUT_HEADER} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:.0f}, "
                         f"not {value.strip()[:40]!r}")
    return seconds


def retry_after_headers(seconds: float | None) -> dict[str, str] | None:
    """The `Retry-After` header for a wait of `seconds` (whole seconds, at least 1), or None without one."""
    return {RETRY_AFTER_HEADER: str(max(1, round(seconds)))} if seconds else None
