"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`: how the bridge's `/v1` routes and the
service's `/v1/audio/` routes answer a failure, so an OpenAI client reads either the same way."""

from __future__ import annotations

OPENAI_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
    413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error",
}
"""Status -> OpenAI's error `type`; any other status is a `server_error`."""


def error_body(status: int, detail: object, *, openai_shaped: bool, param: str | None = None) -> dict[str, object]:
    """A failure's body: `{"detail": ...}`, and OpenAI's `error` beside it where `openai_shaped` (an OpenAI client
    reads `error`, a bridge of any release `detail`)."""
    return {"detail": detail} | (openai_error(status, str(detail), param=param) if openai_shaped else {})


def openai_error(status: int, message: str, *, param: str | None = None,
                 code: str | None = None) -> dict[str, dict[str, str | None]]:
    """The body of a failure with `status` in OpenAI's shape; `param` the request field at fault, if one is."""
    return {"error": {"message": message, "type": OPENAI_ERROR_TYPES.get(status, "server_error"), "param": param,
                      "code": code}}
