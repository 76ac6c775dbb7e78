"""Text to speech (OpenAI's `/v1/audio/speech`): Piper voices run with onnxruntime (voices.py, engine.py),
phonemes from the espeak-ng program (phonemize.py), the sentences of concurrent requests batched into one
model call (onnx_graph.py exposes the durations that cut a batch back into sentences; on a CPU,
decoder_2d.py runs the decoder as 2-D convolutions, faster there), and the audio
encoded per response format, whole or streamed (encode.py). The service imports PyAV, and onnxruntime when a
voice loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpu_service.models.engine import Engine
from gpu_service.models.registry import ModelKey
from gpu_service.models.resolve import ResolvedModel
from gpu_service.runtime.task import Hardware, Task
from gpu_service.settings import Settings
from gpu_service.tasks.speak import routes
from gpu_service.tasks.speak.service import Speak
from gpu_service.tasks.speak.voices import CONFIG_SUFFIX, VoiceFiles, resolve_voice, voices_in


def _resolve(name: str, settings: Settings) -> ResolvedModel:
    """A voice is an `.onnx` file (voices.py), not a transformers directory."""
    files = resolve_voice(name, settings.model_dirs)
    return ResolvedModel(name, str(files.model), files.origin)


def _engine(key: ModelKey, resolved: Any, hardware: Hardware) -> Engine:
    from gpu_service.tasks.speak.engine import PiperEngine

    model = Path(resolved.source)
    files = VoiceFiles(key.name, model, model.with_name(model.name + CONFIG_SUFFIX), resolved.origin)
    return PiperEngine(files, threads=hardware.cpu_threads)


TASK = Task(kind="speak", default_variable="MODEL_SPEAK", engine=_engine, service=Speak,
            routers=(routes.router,), resolve=_resolve, directory_models=voices_in)
