"""The speak task is wired like every task: in `TASKS` with its variable, listed under a capability name the
protocol knows, its voice allowed by default, and its voices found by its own resolver (a Piper voice is an
`.onnx` file, not a transformers directory)."""

from __future__ import annotations

from pathlib import Path

from gpu_protocol.capabilities import CAPABILITY_TASKS
from gpu_service.models.resolve import ModelPolicy
from gpu_service.settings import Settings
from gpu_service.tasks import TASKS, model_variables
from gpu_service.tasks.speak.voices import BUNDLED_VOICE


def test_speak_is_a_task_with_its_variable() -> None:
    assert model_variables()["speak"] == "MODEL_SPEAK"
    speak = next(task for task in TASKS if task.kind == "speak")
    assert speak.resolve is not None
    assert {name for task in TASKS for name in task.capability_names} == set(CAPABILITY_TASKS)


def test_the_bundled_voice_is_allowed_by_default() -> None:
    ModelPolicy(Settings()).check(BUNDLED_VOICE)


def test_the_resolver_finds_a_voice_file_in_the_model_dirs(tmp_path: Path) -> None:
    (tmp_path / "my-voice.onnx").write_bytes(b"onnx")
    (tmp_path / "my-voice.onnx.json").write_text("{}")
    speak = next(task for task in TASKS if task.kind == "speak")
    assert speak.resolve is not None
    resolved = speak.resolve("my-voice", Settings(model_dirs=[str(tmp_path)]))
    assert resolved.source == str(tmp_path / "my-voice.onnx") and resolved.origin == "directory"
