"""How every failure reads: `{"detail": ...}` with its status, never a Python dump.

`ServiceError`s carry their status (and Retry-After); a request that does not fit the schema
gets 422 in the words the bridge uses for the same mistake; anything else is a logged 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpu_protocol.routes import retry_after_headers
from gpu_protocol.validation import validation_message
from gpu_service.errors import ServiceError

log = logging.getLogger(__name__)


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
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                        headers=retry_after_headers(exc.retry_after_s))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_message(exc)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = ("request body is not valid JSON (malformed, not UTF-8, or nested too deeply); "
                  'send a JSON object such as {"texts": ["..."]}')
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
    return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)


def install(app: FastAPI) -> None:
    """Map every failure of `app` to its answer."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)
