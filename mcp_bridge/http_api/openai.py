"""The pool behind OpenAI's embeddings API (`POST /v1/embeddings`, `GET /v1/models`) and Cohere's
rerank API (`POST /v1/rerank`).

In HTTP mode the bridge serves these next to `/mcp`, behind the same bearer token, so any
OpenAI client (OpenClaw's `openai-compatible` memory provider, LangChain, LlamaIndex, the
`openai` package) gets the pool's balancing, failover, sharding and deadlines by pointing
its base URL at the bridge. Errors come in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, with the status an OpenAI client acts on:
401 bad token, 413 too much input, 422 invalid input, 429 + Retry-After when every host is
busy, 503 when no host can serve, 504 past the deadline.

What it needs from the bridge is small on purpose: something with `embed(...)`, `rerank(...)`
and `info()` (the bridge's `GpuClient`), the configuration (limits, secrets to redact, the
models of openai/tei hosts) and the pool's error types.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_protocol.codec import encode_float32_rows
from gpu_protocol.embed import OpenAIEmbeddingRequest
from gpu_protocol.rerank import RerankRequest
from mcp_bridge.client.client import EmbedResult
from mcp_bridge.client.reranking import RerankOutcome
from mcp_bridge.client.views import InfoRow
from mcp_bridge.config import BridgeConfig, redactor
from mcp_bridge.pool.errors import HostRejected, NoHostAvailable, PoolBusy, PoolError, PoolTimeout

log = logging.getLogger("mcp_bridge.openai")
T = TypeVar("T")

PREFIX = "/v1"
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body; more is refused with 413 before it is read whole."""


class Embedder(Protocol):
    """The part of the bridge this API uses (`GpuClient`)."""

    async def embed(
        self, texts: Sequence[str], *, model: str | None = ..., dimensions: int | None = ...,
        input_type: str | None = ...,
    ) -> EmbedResult: ...

    async def rerank(self, request: RerankRequest) -> RerankOutcome: ...

    async def info(self) -> list[InfoRow]: ...


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
             429: "rate_limit_error"}

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}
        headers = {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after else None
        return JSONResponse(body, status_code=self.status, headers=headers)


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


def _check_input(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise ApiError(422, "input must be a string or a list of strings", param="input")
    if not raw:
        raise ApiError(422, "input is an empty list; send at least one text", param="input")
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            kind = "token arrays are not supported, " if isinstance(item, int | list) else ""
            raise ApiError(422, f"input[{i}] is not a string: {kind}send text", param="input")
    return raw


def parse_request(body: Any, config: BridgeConfig) -> tuple[OpenAIEmbeddingRequest, list[str]]:
    """The request and its texts, or an ApiError naming the field (and index) and what is allowed."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object such as {"input": ["text"], "model": "..."}')
    texts = _check_input(body.get("input"))
    try:
        request = OpenAIEmbeddingRequest.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, f"{field}: {first['msg']}", param=str(first["loc"][0]) if first["loc"] else None) from None
    limits = config.limits
    if len(texts) > limits.maxBatchSize:
        raise ApiError(413, f"input has {len(texts)} texts; this bridge takes at most {limits.maxBatchSize} per "
                            "request (limits.maxBatchSize): split the request", param="input")
    for i, text in enumerate(texts):
        if not text.strip():
            raise ApiError(422, f"input[{i}] is blank; every text needs a non-whitespace character", param="input")
        if len(text) > limits.maxTextLength:
            raise ApiError(422, f"input[{i}] has {len(text)} characters; at most {limits.maxTextLength} are "
                                "allowed (limits.maxTextLength)", param="input")
    return request, texts


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB; split the request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB; split the request")
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(err: ValidationError) -> ApiError:
    """A 422 naming the first bad field as the caller wrote it (`documents[2]`)."""
    first = err.errors()[0]
    loc = first["loc"]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return ApiError(422, f"{field}: {first['msg']}", param=str(loc[0]) if loc else None)


def parse_rerank_request(body: Any, config: BridgeConfig) -> RerankRequest:
    """Cohere's rerank request within the bridge's limits, or an ApiError naming the field (and index)."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object such as {"query": "...", "documents": ["text"]}')
    try:
        request = RerankRequest.model_validate(body)
    except ValidationError as err:
        raise _invalid(err) from None
    limits = config.limits
    if len(request.documents) > limits.maxBatchSize:
        raise ApiError(413, f"documents has {len(request.documents)} entries; this bridge takes at most "
                            f"{limits.maxBatchSize} per request (limits.maxBatchSize): split the request",
                       param="documents")
    for name, text in [("query", request.query), *((f"documents[{i}]", t) for i, t in enumerate(request.texts()))]:
        if len(text) > limits.maxTextLength:
            raise ApiError(422, f"{name} has {len(text)} characters; at most {limits.maxTextLength} are allowed "
                                "(limits.maxTextLength)", param=name.split("[")[0])
    return request


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away: the pool then tells the hosts to drop
    the shards (POST /cancel), so an aborted embedding stops on the GPUs, not only here."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        # The body has been read, so the next message can only be the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled() and watcher.done():  # the client left (not a shutdown of this handler)
            raise ApiError(499, "the client closed the request; its work on the hosts was cancelled") from None
        raise
    finally:
        watcher.cancel()


def _as_row(vector: list[float], encoding: str) -> list[float] | str:
    return encode_float32_rows(struct.pack(f"<{len(vector)}f", *vector)) if encoding == "base64" else vector


def openai_app(gpu: Embedder, config: BridgeConfig, unavailable: str | None = None) -> ASGIApp:
    """The ASGI app for `/v1/...`. `unavailable`: why nothing can be served (no hosts configured)."""
    redact = redactor(config)  # the same secrets as the MCP tools' errors hide

    def answering(handler: Callable[[Request], Awaitable[JSONResponse]]) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                if unavailable:
                    raise ApiError(503, unavailable, code="not_configured")
                return await handler(request)
            except ApiError as exc:
                exc.message = redact(exc.message)
                if exc.status >= 500:
                    log.warning("%s %s: HTTP %d: %s", request.method, request.url.path, exc.status, exc.message)
                return exc.response()
            except Exception:  # a bug here: say so without details, log them
                log.exception("%s %s failed", request.method, request.url.path)
                return ApiError(500, "internal error in the bridge; see its log").response()

        return endpoint

    async def embeddings(request: Request) -> JSONResponse:
        try:
            body = json.loads(await _read_body(request))
        except ValueError:
            raise ApiError(400, 'the body is not valid JSON; send {"input": ["text"], "model": "..."}') from None
        parsed, texts = parse_request(body, config)
        try:
            result = await cancel_on_disconnect(request.receive, gpu.embed(
                texts, model=parsed.model, dimensions=parsed.dimensions, input_type=parsed.input_type,
            ))
        except (PoolError, ValueError) as exc:
            raise pool_error(exc) from None
        log.info("POST /v1/embeddings: %d texts%s, model %s, on %s in %.2fs", len(texts),
                 f" ({parsed.input_type})" if parsed.input_type else "", result.model, ", ".join(result.hosts),
                 result.seconds)
        data = [{"object": "embedding", "index": i, "embedding": _as_row(v, parsed.encoding_format)}
                for i, v in enumerate(result.embeddings)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return JSONResponse({"object": "list", "data": data, "model": result.model, "usage": usage})

    async def rerank(request: Request) -> JSONResponse:
        try:
            body = json.loads(await _read_body(request))
        except ValueError:
            raise ApiError(400, 'the body is not valid JSON; send {"query": "...", "documents": ["text"]}') from None
        parsed = parse_rerank_request(body, config)
        try:
            outcome = await cancel_on_disconnect(request.receive, gpu.rerank(parsed))
        except (PoolError, ValueError) as exc:
            raise pool_error(exc) from None
        log.info("POST /v1/rerank: %d documents, model %s, on %s in %.2fs", len(parsed.documents),
                 outcome.response.model, ", ".join(outcome.hosts), outcome.seconds)
        return JSONResponse(outcome.response.model_dump(mode="json", exclude_none=True))

    async def models(request: Request) -> JSONResponse:
        found, problems = await list_models(gpu, config)
        body: dict[str, Any] = {"object": "list", "data": found}
        if problems:  # not OpenAI's, and ignored by its clients: why a host is missing from the list
            body["host_errors"] = [{"host": name, "error": redact(error)} for name, error in problems]
        return JSONResponse(body)

    return Starlette(routes=[
        Route(f"{PREFIX}/embeddings", answering(embeddings), methods=["POST"]),
        Route(f"{PREFIX}/models", answering(models), methods=["GET"]),
        Route(f"{PREFIX}/rerank", answering(rerank), methods=["POST"]),
    ])


async def list_models(gpu: Embedder, config: BridgeConfig) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The embedding models the pool serves: loaded on gpu-service hosts (from their /info, with
    dimensions, maximum input tokens and prompts), configured for openai/tei hosts, and the
    bridge's `models.embed`. `default: true` marks the one used when a request names none.
    Also (host, error) for every gpu-service host whose /info did not answer."""
    found: dict[str, dict[str, Any]] = {}
    problems: list[tuple[str, str]] = []

    def entry(name: str) -> dict[str, Any]:
        return found.setdefault(name, {"id": name, "object": "model", "created": 0, "owned_by": "gpu-bridge",
                                       "hosts": [], "default": False})

    host_defaults: list[str] = []
    for row in await gpu.info():
        if row.info is None:
            if row.described and row.error:
                problems.append((row.name, row.error))
            continue
        host_defaults.append(row.info.default_models.get("embed") or "")
        for model in row.info.models:
            if model.kind != "embed":
                continue
            item = entry(model.name)
            item["hosts"].append(row.name)
            for value, out in ((model.dimensions, "dimensions"), (model.max_tokens, "max_input_tokens"),
                               (model.prompts, "prompts")):
                if value is not None:
                    item[out] = value
    for host in config.pool_hosts():
        if host.model:  # what the bridge asks an openai/tei host for
            entry(host.model)["hosts"].append(host.label)
    default = config.models.embed or next((d for d in host_defaults if d), None)
    if default is None and found:
        default = next(iter(found))
    if default is not None:
        entry(default)["default"] = True
    return list(found.values()), problems


def route_v1(openai: ASGIApp, other: ASGIApp) -> ASGIApp:
    """`/v1/...` HTTP requests to `openai`, everything else (MCP, lifespan) to `other`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(PREFIX + "/")):
            await openai(scope, receive, send)
        else:
            await other(scope, receive, send)

    return app
