"""A tiny HTTP server on loopback that answers however a test wants: uvicorn in a thread of the test's
own process (no process is started)."""

from __future__ import annotations

import threading

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from mcp_bridge.embedded import free_port
from tests.support.waiting import wait_until


class FakeHost:
    """A tiny HTTP server on loopback that answers however a test wants (uvicorn in a thread)."""

    def __init__(self, routes: list[Route]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hits = 0

        inner = Starlette(routes=routes)

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                self.hits += 1
            await inner(scope, receive, send)

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeHost:
        self.thread.start()
        wait_until(lambda: self.server.started, interval=0.02, message=f"the fake host on {self.url} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
