"""How `/v1` failures reach an OpenAI (or Cohere) client: OpenAI's error shape,
`{"error": {"message", "type", "param", "code"}}`, with the status such a client acts on."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Send

from gpu_protocol.cancel import WorkCancelled, cancel_on_disconnect
from gpu_protocol.openai_errors import openai_error
from gpu_protocol.routes import retry_after_headers
from mcp_bridge.pool.errors import HostRejected, NoHostAvailable, PoolBusy, PoolError, PoolTimeout

T = TypeVar("T")


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        body = openai_error(self.status, self.message, param=self.param, code=self.code)
        return JSONResponse(body, status_code=self.status, headers=retry_after_headers(self.retry_after))


async def send_unauthorized(send: Send) -> None:
    """The bearer-token refusal in OpenAI's shape (OpenAI clients raise AuthenticationError on it)."""
    response = ApiError(401, "unauthorized: send Authorization: Bearer <the bridge's --auth-token> (an OpenAI "
                             "client: api_key=<token>)", code="invalid_api_key").response()
    await send({"type": "http.response.start", "status": 401,
                "headers": [*response.raw_headers, (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": response.body})


def pool_error(exc: PoolError | ValueError) -> ApiError:
    """The status an OpenAI client should see for a pool failure."""
    if isinstance(exc, PoolBusy):
        return ApiError(429, f"{exc}; retry later", code="hosts_busy", retry_after=exc.retry_after)
    if isinstance(exc, HostRejected):
        if exc.status == 401:  # the bridge's key for that host, not the caller's token
            return ApiError(502, f"{exc}: the bridge's apiKey for this host is missing or wrong", code="host_auth")
        if 400 <= exc.status < 500:
            return ApiError(exc.status, f"host {exc.host!r}: {exc.detail}", code="rejected_by_host")
    if isinstance(exc, PoolTimeout):
        return ApiError(504, str(exc), code="deadline_exceeded")
    if isinstance(exc, NoHostAvailable):
        return ApiError(503, str(exc), code="no_host_available")
    return ApiError(502, str(exc), code="bad_gateway")


async def pooled(request: Request, work: Awaitable[T]) -> T:
    """`work`, cancelled if the client leaves (the pool then tells the hosts to drop the shards, POST
    /cancel, so an aborted embedding stops on the GPUs, not only here); a pool failure as the status an
    OpenAI client acts on."""
    try:
        return await cancel_on_disconnect(request.receive, work)
    except WorkCancelled:
        raise ApiError(499, "the client closed the request; its work on the hosts was cancelled") from None
    except (PoolError, ValueError) as exc:
        raise pool_error(exc) from None
