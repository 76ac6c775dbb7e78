"""Start-up and shutdown: build the service's state, warm the default models, drain on the way out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from gpu_service.runtime.state import ServiceState
from gpu_service.runtime.task import Task
from gpu_service.settings import Settings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def lifespan(settings: Settings, tasks: Sequence[Task], *, warm_before_serving: bool) -> Lifespan:
    """The app's lifespan: `warm_before_serving` returns from start-up only once the defaults are
    loaded; otherwise they load in the background and `/health` says "starting" meanwhile.
    Shutdown drains in-flight requests before the models are released, then stops what the tasks'
    services started (the audio decoder processes)."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings, tasks)
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
            state.close()

    return run
