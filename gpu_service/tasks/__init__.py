"""The service's tasks, one folder each: its routes, its service (what a request does, independent of
HTTP), its engine (the model on the device), and the `Task` that ties them together
(`gpu_service.runtime.task`). `TASKS` is the list the app serves: adding a task is a folder and a line here."""

from __future__ import annotations

from gpu_service.runtime.task import Task
from gpu_service.tasks import bertscore, embed, rerank, speak, transcribe

TASKS: tuple[Task, ...] = (
    embed.TASK,
    bertscore.TASK,
    rerank.TASK,
    transcribe.TASK,
    speak.TASK,
)
"""Every task this service serves, in the order /info lists them."""


def model_variables(tasks: tuple[Task, ...] = TASKS) -> dict[str, str]:
    """Kind of model -> the variable that names its default, for `Settings.from_env`."""
    return {task.kind: task.default_variable for task in tasks}
