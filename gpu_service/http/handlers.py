"""How every failure reads: `{"detail": ...}` with its status, never a Python dump; on OpenAI's audio routes
(`/v1/audio/...`) OpenAI's error shape beside it, `{"detail": ..., "error": {"message", "type", "param",
"code"}}` (an OpenAI client reads `error`; a bridge, of any release, reads `detail`).

`ServiceError`s carry their status (and Retry-After); a request that does not fit the schema
gets 422 in the words the bridge uses for the same mistake; anything else is a logged 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpu_protocol.openai_errors import error_body
from gpu_protocol.routes import OPENAI_SHAPED_PREFIX, retry_after_headers
from gpu_protocol.validation import error_location, validation_message
from gpu_service.errors import ServiceError

log = logging.getLogger(__name__)



def _error(request: Request, status: int, detail: Any, param: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A failure's answer: `detail`, and on `OPENAI_SHAPED_PREFIX` routes OpenAI's `error` too."""
    body = error_body(status, detail, openai_shaped=request.url.path.startswith(OPENAI_SHAPED_PREFIX), param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def _param(exc: RequestValidationError) -> str | None:
    """The top-level body field the first error is about (OpenAI's `param`)."""
    for err in exc.errors():
        loc = [part for part in err.get("loc", ()) if part not in ("body", "query", "form")]
        return error_location(loc[:1]) if loc else None
    return None


def _validation_message(exc: RequestValidationError) -> str:
    """The same words the bridge uses for the same mistake (`texts[1] is blank: ...`)."""
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if loc[:1] == ("body",) and len(loc) > 1 and isinstance(loc[1], str):
            loc = loc[1:]  # a field of the body: name the field alone
        errors.append({**err, "loc": loc})
    return "invalid request: " + validation_message(errors)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {**(retry_after_headers(exc.retry_after_s) or {}), **exc.headers}
    return _error(request, exc.status_code, exc.detail, exc.param, headers=headers or None)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _error(request, 422, _validation_message(exc), _param(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = ("request body is not valid JSON (malformed, not UTF-8, or nested too deeply); "
                  'send a JSON object such as {"texts": ["..."]}')
    return _error(request, exc.status_code, detail, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
    return _error(request, 500, "internal error; see the service log")


def install(app: FastAPI) -> None:
    """Map every failure of `app` to its answer."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)
