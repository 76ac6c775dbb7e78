"""The API key (`API_KEY`): with it set, every path but `/health` needs the key, as `X-API-Key: <key>`
or as `Authorization: Bearer <key>` (the protocol's `KeyRequired`, constant time; the key is never logged)."""

from __future__ import annotations

from gpu_protocol.auth import ASGIApp, KeyRequired
from gpu_protocol.routes import OPEN_PATHS, OPENAI_SHAPED_PREFIX


def _refusal(sent_as: str | None) -> str:
    reason = "missing key: send X-API-Key: <key> or Authorization: Bearer <key>" if sent_as is None else f"wrong {sent_as}"
    return f"unauthorized: {reason} (this service requires the key set in its API_KEY)"


class ApiKeyMiddleware(KeyRequired):
    """The service's key (`API_KEY`), as `X-API-Key: <key>` or `Authorization: Bearer <key>`; /health is open.
    A refusal on an OpenAI audio route reads in OpenAI's error shape too."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        super().__init__(app, api_key, refusal=_refusal, accept_x_api_key=True, open_paths=OPEN_PATHS,
                         openai_shaped=OPENAI_SHAPED_PREFIX)
