"""Errors the service raises on purpose, each mapped to one HTTP status.

Handlers raise these; `app.py` turns them into `{"detail": ...}` with the status
and, where a client should come back later, a `Retry-After` header.
"""

from __future__ import annotations

from pydantic import ValidationError

from gpu_protocol.routes import TOO_LATE_HEADER
from gpu_protocol.validation import error_location, validation_message


class ServiceError(Exception):
    status_code = 500
    retry_after_s: float | None = None
    headers: dict[str, str] = {}
    """Headers its answer carries besides `Retry-After`."""

    def __init__(self, detail: str, *, retry_after_s: float | None = None, param: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.param = param
        """The request field at fault, where one is (OpenAI's error `param`)."""
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class ClientClosed(ServiceError):
    """The client cancelled the request; nobody is waiting for the answer."""

    status_code = 499


class BadRequest(ServiceError):
    status_code = 400


class ModelNotAllowed(ServiceError):
    status_code = 403


class ModelNotFound(ServiceError):
    status_code = 404


class TooLarge(ServiceError):
    status_code = 413


class Unprocessable(ServiceError):
    status_code = 422


class Overloaded(ServiceError):
    """The queue is full: come back after Retry-After."""

    status_code = 429


class TooLate(Overloaded):
    """Batch work that the backlog ahead of it would not let finish within its caller's wait."""

    headers = {TOO_LATE_HEADER: "1"}


class ModelLoadFailed(ServiceError):
    status_code = 500


class Unavailable(ServiceError):
    """Starting, draining, or the device is unusable: another host may serve it."""

    status_code = 503


class DeadlineExceeded(ServiceError):
    status_code = 504


def invalid_request(exc: ValidationError) -> Unprocessable:
    """A body that does not fit its schema: 422 naming every bad field, `param` the first one's top-level field."""
    errors = exc.errors()
    loc = errors[0]["loc"] if errors else ()
    return Unprocessable("invalid request: " + validation_message(errors),
                         param=error_location(loc[:1]) if loc else None)
