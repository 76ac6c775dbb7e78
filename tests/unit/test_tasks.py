"""Adding a task is one folder and one line in `TASKS` (docs/architecture.md, "Adding a task"): a task the
app is given only as a `Task` (here a toy one, built below) is served by `create_app` through the same
runtime as the real ones (its engine built by the registry, its requests batched and tracked as jobs),
its default read from its own variable and warmed, and it is listed in `/info` capabilities and models.

In-process (`TestClient` runs the real app and its lifespan), with a trivial engine: no model loads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gpu_protocol import routes
from gpu_protocol.capabilities import CAPABILITY_TASKS
from gpu_protocol.versions import PROTOCOL_VERSION
from gpu_service.app import create_app, settings_from_env
from gpu_service.http.serve import cancellable, ready_service
from gpu_service.models.engine import EngineDetails
from gpu_service.models.registry import ModelKey, ModelRegistry
from gpu_service.runtime.state import ServiceState
from gpu_service.runtime.task import Hardware, Task
from gpu_service.tasks import TASKS


class ToyEngine:
    """Counts the characters of each text."""

    padded = False
    concurrency = 1
    memory_bytes = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, batch: list[Any]) -> Iterable[Any]:
        return [len(text) for text in batch]

    def details(self) -> EngineDetails:
        return EngineDetails()

    def close(self) -> None:
        pass


class ToyService:
    def __init__(self, state: ServiceState) -> None:
        self.registry: ModelRegistry = state.registry
        self.state = state

    async def count(self, texts: list[str]) -> tuple[list[int], str]:
        key = self.registry.key("toy", self.state.settings.default_models["toy"])
        job = self.state.jobs.start("toy", key.label, len(texts))
        try:
            async with self.registry.use(key) as loaded:
                counts = await loaded.scheduler.submit(texts, [1] * len(texts), job=job)
        finally:
            self.state.jobs.finish(job)
        return counts, key.label


class CountRequest(BaseModel):
    texts: list[str]


router = APIRouter()


@router.post("/toy/count")
async def count(body: CountRequest, request: Request) -> Any:
    state = ready_service(request)
    counts, model = await cancellable(request, state.service_of("toy", ToyService).count(body.texts))
    return {"counts": counts, "model": model}


def _toy_engine(key: ModelKey, resolved: Any, hardware: Hardware) -> ToyEngine:
    return ToyEngine(key.name)


TOY = Task(kind="toy", default_variable="MODEL_TOY", engine=_toy_engine, service=ToyService, routers=(router,),
           capabilities=("toy", "toy-count"))


def test_a_task_given_only_as_a_task_is_served_and_listed(tmp_path: Path) -> None:
    model = tmp_path / "toy-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    settings = settings_from_env({"MODEL_TOY": str(model)}, tasks=[TOY])
    assert settings.default_models["toy"] == str(model), "its default comes from its own variable"
    with TestClient(create_app(settings, tasks=[TOY], warm_before_serving=True)) as client:
        answer = client.post("/toy/count", json={"texts": ["a", "abc", "abcde"]})
        info = client.get("/info", headers={routes.PROTOCOL_HEADER: str(PROTOCOL_VERSION)}).json()
        embed = client.post("/embed", json={"texts": ["a"]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"counts": [1, 3, 5], "model": str(model)}
    assert embed.status_code == 404, "the app serves the tasks it is given, and only those"
    assert set(info["capabilities"]) == {"toy", "toy-count"}
    assert info["capabilities"]["toy"]["default"] == str(model)
    assert info["capabilities"]["toy-count"]["loaded"] == [str(model)], "the default was warmed"
    assert info["default_models"] == {"toy": str(model)}
    assert [(m["name"], m["kind"], m["default"]) for m in info["models"]] == [(str(model), "toy", True)]


def test_the_services_tasks_are_the_ones_the_protocol_names() -> None:
    """What a host of this release lists in /info capabilities is what its bridge knows (one list each side)."""
    assert [name for task in TASKS for name in task.capability_names] == list(CAPABILITY_TASKS)
    assert len({task.kind for task in TASKS}) == len(TASKS)
