"""Speech to text: Whisper through faster-whisper (CTranslate2), decoded in long-lived decoder
processes with a time limit per file, chunked at silences by Silero VAD, and the chunks of concurrent
requests batched together on the model's scheduler. Nothing heavy is imported at import time: the
engine's modules load with the first model, and the decoder processes import only PyAV."""

from __future__ import annotations

from typing import Any

from gpu_service.models.engine import Engine
from gpu_service.models.registry import ModelKey
from gpu_service.runtime.task import Hardware, Task
from gpu_service.tasks.transcribe import routes
from gpu_service.tasks.transcribe.service import Speech


def _engine(key: ModelKey, resolved: Any, hardware: Hardware) -> Engine:
    from gpu_service.tasks.transcribe.engine import SpeechEngine

    return SpeechEngine(resolved, hardware.device, hardware.cpu_threads)


TASK = Task(kind="transcribe", default_variable="MODEL_TRANSCRIBE", engine=_engine, service=Speech,
            routers=(routes.router,), body_limits=routes.body_limits)
