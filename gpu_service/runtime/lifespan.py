"""Start-up and shutdown: build the service's state, warm the default models, drain on the way out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from gpu_service.runtime.state import ServiceState
from gpu_service.settings import Settings
from gpu_service.tasks.transcribe.decode import stop_decoders

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def lifespan(settings: Settings, *, warm_before_serving: bool) -> Lifespan:
    """The app's lifespan: `warm_before_serving` returns from start-up only once the defaults are
    loaded; otherwise they load in the background and `/health` says "starting" meanwhile.
    Shutdown drains in-flight requests before the models are released, then stops the audio
    decoder processes."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings)
        app.state.service = state
        warm_task = None
        if not settings.warm_defaults:
            state.phase = "ok"
        elif warm_before_serving:
            await state.warm()
        else:
            warm_task = asyncio.create_task(state.warm())
        try:
            yield
        finally:
            if warm_task is not None:
                warm_task.cancel()
            await state.drain()
            stop_decoders()

    return run
