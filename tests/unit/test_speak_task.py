"""The speak task is wired like every task: in `TASKS` with its variable, listed under a capability name the
protocol knows, its voice allowed by default, and its voices found by its own resolver (a Piper voice is an
`.onnx` file, not a transformers directory)."""

from __future__ import annotations

from pathlib import Path

from gpu_protocol.capabilities import CAPABILITY_TASKS
from gpu_protocol.speech_synthesis import SpeechRequest
from gpu_service.models.registry import ModelKey
from gpu_service.models.resolve import ModelPolicy
from gpu_service.scheduling.lanes import AskedLane, Lane, asked_lane
from gpu_service.settings import Settings
from gpu_service.tasks import TASKS, model_variables
from gpu_service.tasks.speak.service import Voice, speech_job
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



def test_a_short_reply_is_interactive_a_long_text_batch_unless_the_caller_asked() -> None:
    """The class of a speech request, decided where it starts (serve_stream sets the caller's lane there)."""
    voice = Voice(ModelKey("speak", BUNDLED_VOICE), 0, ())

    def lane_of(text: str, asked: AskedLane | None = None) -> Lane:
        token = asked_lane.set(asked)
        try:
            return speech_job(SpeechRequest(input=text, voice="alloy"), voice, 1).lane
        finally:
            asked_lane.reset(token)

    assert lane_of("Dinner is at seven.") == Lane("interactive", "")
    assert lane_of("A long chapter. " * 100) == Lane("batch", "")
    assert lane_of("Dinner is at seven.", AskedLane("batch", "audiobooks")) == Lane("batch", "audiobooks")


def test_info_lists_the_voices_in_the_model_dirs(tmp_path: Path) -> None:
    """A voice file (`<name>.onnx` + `.onnx.json`) and a folder holding one voice in GPU_MODEL_DIRS are in
    `/info`'s `allowed` (what the bridge routes a request's `model` by), the path as another name; a lone
    `.onnx` without its config, or a folder of two voices, is not a voice."""
    from gpu_service.capabilities import capabilities
    from gpu_service.runtime.state import ServiceState

    for name in ("file-voice", "lonely"):
        (tmp_path / f"{name}.onnx").write_bytes(b"onnx")
    (tmp_path / "file-voice.onnx.json").write_text("{}")
    for folder, voices in (("folder-voice", ["v"]), ("two-voices", ["a", "b"])):
        (tmp_path / folder).mkdir()
        for voice in voices:
            (tmp_path / folder / f"{voice}.onnx").write_bytes(b"onnx")
            (tmp_path / folder / f"{voice}.onnx.json").write_text("{}")
    settings = Settings(model_dirs=[str(tmp_path)], warm_defaults=False)
    speak = capabilities(ServiceState(settings, TASKS), settings)["speak"]
    assert isinstance(speak.allowed, list)
    assert {"file-voice", "folder-voice"} <= set(speak.allowed)
    assert not {"lonely", "two-voices"} & set(speak.allowed)
    assert speak.names["file-voice"] == [str(tmp_path / "file-voice.onnx")]
