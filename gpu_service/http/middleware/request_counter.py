"""Counting every answer by endpoint and status, for `/metrics`."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestCounter:
    """Pure ASGI middleware counting responses by endpoint and status (cheaper than an http middleware).

    The label is the route's template (`/cancel/{request_id}`), never the raw path: raw paths
    would make a new time series for every request id and every path a scanner tries. A response
    sent before routing (a refused key, a body too large) counts under its path when that is a
    route without parameters, else as `other`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def endpoint(scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "other"))
        plain = {getattr(r, "path", "") for r in getattr(scope["app"], "routes", [])}
        return scope["path"] if scope["path"] in plain and "{" not in scope["path"] else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                service = getattr(scope["app"].state, "service", None)
                if service is not None:
                    service.metrics.requests.labels(self.endpoint(scope), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
