"""What the OpenClaw test files share: one OpenClaw install per test process (installing the plugin takes a
minute of CLI calls), which each module gets as if fresh (`OpenClaw.reset`), and one spoken voice note."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.in_process import process_fixture
from tests.support.openclaw_support import OpenClaw, VoiceNote, installed_openclaw, make_voice_note


@process_fixture(scope="session")
def openclaw_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenClaw]:
    with installed_openclaw(tmp_path_factory) as claw:
        yield claw


@process_fixture(scope="module")
def openclaw(openclaw_install: OpenClaw) -> OpenClaw:
    """OpenClaw with this checkout's plugin installed, its config as the install left it and an empty bridge log."""
    openclaw_install.reset()
    return openclaw_install


@process_fixture(scope="session")
def voice_note(tmp_path_factory: pytest.TempPathFactory) -> VoiceNote:
    return make_voice_note(tmp_path_factory)
