"""What every route shares: the service's state, the error responses they document, and `serve`, the one
path every compute route answers through: ready, then cancellable, then observed, then its timing headers.
`serve_stream` is the same path for an answer sent in pieces (speech synthesis)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from gpu_protocol import routes
from gpu_protocol.cancel import Cancellation, WorkCancelled, cancel_on_disconnect
from gpu_protocol.priority import PRIORITY_HEADER, TENANT_HEADER, parse_priority, parse_tenant
from gpu_protocol.status import ErrorResponse, ServiceStatus
from gpu_service.errors import BadRequest, ClientClosed
from gpu_service.runtime.result import Result
from gpu_service.runtime.state import ServiceState
from gpu_service.scheduling.jobs import Timing
from gpu_service.scheduling.lanes import AskedLane, asked_lane

T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 500, 503, 504)
}
"""The error answers a compute route documents (OpenAPI): each `{"detail": ...}`."""

GroupHealth = Callable[[], Awaitable[tuple[ServiceStatus, list[str]]]]
"""The health of the group of replicas this app serves in (Ray Serve: its deployment), as
(status, problems); `/health` answers the worse of it and this replica's own."""


def service(request: Request) -> ServiceState:
    """The state the app's lifespan built (see lifespan.py)."""
    state: ServiceState = request.app.state.service
    return state


def ready_service(request: Request) -> ServiceState:
    """The state, once the service serves (503 with Retry-After while starting or draining)."""
    state = service(request)
    state.require_ready()
    return state


async def cancellable(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its unstarted batches) if the client goes away or
    asks: a disconnect, or `POST /cancel/{id}` naming this request's `X-Request-Id`.

    The explicit cancel exists because a client's HTTP library may keep the connection
    open after it abandons a request, and proxies may hide the disconnect."""
    registry = service(request).cancellable
    request_id = request.headers.get(routes.REQUEST_ID_HEADER)
    cancellation = Cancellation()
    if request_id:
        registry[request_id] = cancellation
    try:
        return await cancel_on_disconnect(request.receive, work, cancellation)
    except WorkCancelled:  # answer instead of crashing: nobody reads it, but the log stays clean
        raise ClientClosed("the client cancelled this request") from None
    finally:
        if request_id:
            registry.pop(request_id, None)


ANSWER_MARGIN_S = 0.25
"""A request whose caller said how long it waits (`X-GPU-Timeout`) gives up this much sooner (at most a tenth of
the wait), so that its answer (a 504 naming the deadline) reaches the caller before it stops listening."""


def asked_for(request: Request) -> AskedLane:
    """The class (`X-GPU-Priority`), tenant (`X-GPU-Tenant`) and wait (`X-GPU-Timeout`) the caller asked for;
    400 naming what is allowed."""
    try:
        wait = routes.parse_timeout(request.headers.get(routes.TIMEOUT_HEADER))
        return AskedLane(parse_priority(request.headers.get(PRIORITY_HEADER)),
                         parse_tenant(request.headers.get(TENANT_HEADER)),
                         None if wait is None else time.monotonic() + wait - min(ANSWER_MARGIN_S, wait / 10))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def timing_headers(timing: Timing) -> dict[str, str]:
    """Where the request's time went, and the class it queued in (`X-GPU-Priority`, where it queued at all):
    a caller sees the class its size or header gave it, and a bridge learns that this host queues by class
    and tenant (a 0.4.0 service sends no such header)."""
    queued_in = {PRIORITY_HEADER: timing.priority} if timing.priority is not None else {}
    return {"x-queue-time": f"{timing.queue_s * 1000:.1f}", "x-inference-time": f"{timing.inference_s * 1000:.1f}",
            **queued_in}


def observe(request: Request, timing: Timing, endpoint: str | None = None) -> None:
    """Record a request's queue and inference time under `endpoint` (the request's path when None)."""
    metrics = service(request).metrics
    endpoint = endpoint or request.url.path
    metrics.queue_seconds.labels(endpoint).observe(timing.queue_s)
    if timing.priority is not None:
        metrics.queue_seconds_by_class.labels(timing.priority).observe(timing.queue_s)
    metrics.inference_seconds.labels(endpoint).observe(timing.inference_s)


async def serve(request: Request, work: Callable[[ServiceState], Awaitable[Result[T]]],
                answer: Callable[[Result[T]], Response], *, endpoint: str | None = None) -> Response:
    """Serve one request: once the service is ready, run `work` (cancelled if the client goes away or asks),
    record its timing under `endpoint` (the request's path when None), and send `answer`'s response for its
    result with the timing headers."""
    state = ready_service(request)
    asked = asked_lane.set(asked_for(request))  # the work queues in the lane its caller asked for
    try:
        result = await cancellable(request, work(state))
    finally:
        asked_lane.reset(asked)
    observe(request, result.timing, endpoint)
    response = answer(result)
    response.headers.update(timing_headers(result.timing))
    return response


@dataclass
class Stream:
    """An answer sent in pieces: the pieces (the work runs as they are read), and where its time went so far."""

    pieces: AsyncGenerator[bytes, None]
    timing: Callable[[], Timing]


async def serve_stream(request: Request, start: Callable[[ServiceState], Awaitable[Stream]],
                       answer: Callable[[AsyncIterator[bytes]], Response], *, endpoint: str | None = None) -> Response:
    """Serve one streamed request as `serve` serves a whole one: `start` runs in the lane the caller asked for
    (it decides the request's class), the first piece is made before the response starts (so a failure before
    any byte is an error answer, and the timing headers give the queue and inference time up to it), the rest
    stops at the next piece when the client leaves or `POST /cancel/{X-Request-Id}` names it, and the
    whole stream's timing is recorded under `endpoint` when it ends."""
    state = ready_service(request)
    asked = asked_lane.set(asked_for(request))
    try:
        stream = await start(state)
    finally:
        asked_lane.reset(asked)
    try:
        first = await cancellable(request, anext(stream.pieces, b""))  # cancellable by id or a disconnect
    except BaseException:
        await stream.pieces.aclose()
        raise
    registry, request_id = state.cancellable, request.headers.get(routes.REQUEST_ID_HEADER)
    cancellation = Cancellation()  # from here on, `POST /cancel/{id}` ends the stream at its next piece
    if request_id:
        registry[request_id] = cancellation

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for piece in stream.pieces:
                if cancellation.requested:
                    return
                yield piece
        finally:
            if request_id:
                registry.pop(request_id, None)
            await stream.pieces.aclose()
            observe(request, stream.timing(), endpoint)

    response = answer(rest())
    response.headers.update(timing_headers(stream.timing()))
    return response
