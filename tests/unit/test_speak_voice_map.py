"""The operator's mapping of OpenAI's voice names (GPU_SPEAK_VOICES): read and checked at start (a bad entry is
named), then used when a request names `alloy` & co: a speaker of the voice spoken, or another voice model
(when the request names none). The voices here are stand-ins (their configs only: nothing is synthesized)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest

from gpu_protocol.speech_synthesis import SpeechRequest
from gpu_service.app import settings_from_env
from gpu_service.errors import Unprocessable
from gpu_service.models.registry import ModelKey
from gpu_service.settings import Settings
from gpu_service.tasks.speak.engine import PiperEngine
from gpu_service.tasks.speak.service import Speak, mapped_model, speaker_of
from gpu_service.tasks.speak.voices import VoiceConfig


def stand_in(name: str, speakers: dict[str, int]) -> PiperEngine:
    """A loaded voice as far as voice names go (no model session)."""
    engine = PiperEngine.__new__(PiperEngine)
    engine.name = name
    engine.config = VoiceConfig(22_050, "en-us", {}, 0.667, 1.0, 0.8, speakers)
    return engine


def test_the_setting_is_read_and_a_bad_entry_is_named() -> None:
    settings = settings_from_env({"GPU_SPEAK_VOICES": " alloy=bob , nova = deep-voice"})
    assert settings.speak_voices == {"alloy": "bob", "nova": "deep-voice"}
    assert settings_from_env({}).speak_voices == {}
    for value, named in [("alloy", "'alloy' is not <OpenAI voice>="), ("alloy=", "'alloy='"),
                         ("robot=bob", "'robot' is not one of OpenAI's voices (alloy, ash"),
                         ("alloy=bob,alloy=amy", "maps 'alloy' twice")]:
        with pytest.raises(ValueError, match="GPU_SPEAK_VOICES") as raised:
            settings_from_env({"GPU_SPEAK_VOICES": value})
        assert named in str(raised.value)


def test_a_mapped_name_speaks_with_the_speaker_it_is_mapped_to() -> None:
    duo = stand_in("duo", {"amy": 0, "bob": 1})
    mapped = {"alloy": "bob", "nova": "deep-voice"}
    assert speaker_of(duo, "alloy", mapped) == 1  # mapped to a speaker
    assert speaker_of(duo, "alloy") == 0  # unmapped: the first speaker
    assert speaker_of(duo, "echo", mapped) == 0
    assert (mapped_model(duo, "alloy", mapped), mapped_model(duo, "nova", mapped), mapped_model(duo, "echo", mapped)) \
        == (None, "deep-voice", None)
    assert mapped_model(duo, "alloy", {"alloy": "duo"}) is None  # the voice itself
    with pytest.raises(Unprocessable) as raised:
        speaker_of(duo, "robot", mapped)
    assert raised.value.param == "voice"


class Registry:
    """The voices a stand-in host has loaded, by name."""

    def __init__(self, *engines: PiperEngine) -> None:
        self.engines = {e.name: e for e in engines}
        self.used: list[str] = []

    def key(self, kind: str, name: str) -> ModelKey:
        return ModelKey(kind, name)

    @asynccontextmanager
    async def use(self, key: ModelKey) -> AsyncIterator[SimpleNamespace]:
        self.used.append(key.name)
        engine = self.engines[key.name]
        yield SimpleNamespace(engine_as=lambda kind: engine)


@pytest.mark.anyio
async def test_a_name_mapped_to_another_voice_model_speaks_with_it_unless_the_request_names_one() -> None:
    registry = Registry(stand_in("joe", {}), stand_in("deep-voice", {}))
    settings = Settings(default_models={"speak": "joe"}, speak_voices={"onyx": "deep-voice"})
    speak = Speak(SimpleNamespace(settings=settings, registry=registry))  # type: ignore[arg-type]
    assert (await speak.voice(SpeechRequest(model="tts-1", input="Hi.", voice="onyx"))).key.name == "deep-voice"
    assert (await speak.voice(SpeechRequest(input="Hi.", voice="alloy"))).key.name == "joe"
    assert (await speak.voice(SpeechRequest(model="joe", input="Hi.", voice="onyx"))).key.name == "joe"
