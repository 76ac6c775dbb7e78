"""The order `make test` hands test files to its workers: the slowest first.

pytest-xdist (`--dist loadfile`) gives a worker a whole file at a time, in collection order when it is told not
to reorder (`--no-loadscope-reorder`, in pyproject.toml; by default it sends the files with the most tests
first, which put the few-test OpenClaw files at the very end). A long file that starts last is the suite's
critical path, so the files that take longest start first and the quick ones fill in around them, on
whichever worker is free. The list is what a profile measured (docs/development.md, "Test suite time");
a file not on it keeps its place in the usual order, after these.
"""

from __future__ import annotations

import pytest

from tests.support import ROOT

SLOWEST_FIRST: tuple[str, ...] = (
    "tests/clients/test_openclaw.py",
    "tests/clients/test_openclaw_voice.py",
    "tests/bridge/test_multihost.py",
    "tests/service/test_service_http.py",
    "tests/clients/test_openclaw_audio.py",
    "tests/bridge/test_compat.py",
    "tests/bridge/test_cli.py",
    "tests/clients/test_openai_api.py",
    "tests/bridge/test_bridge_speak.py",
    "tests/service/test_rerank.py",
    "tests/clients/test_transcribe_openai.py",
    "tests/service/test_transcribe_errors.py",
    "tests/bridge/test_bridge_mcp.py",
    "tests/bridge/test_bridge_rerank.py",
    "tests/bridge/test_rolling_upgrade.py",
    "tests/bridge/test_discovery.py",
    "tests/service/test_decoders.py",
    "tests/service/test_speak_routes.py",
    "tests/repo/test_readme.py",
)
"""Test files, relative to the checkout, from the longest to run (setup included) down."""


def slowest_files_first(items: list[pytest.Item]) -> None:
    """Sort `items` (stable: tests keep their order within a file) so the files of SLOWEST_FIRST come first."""
    missing = [name for name in SLOWEST_FIRST if not (ROOT / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/support/ordering.py names test files that do not exist: {missing}")
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}

    def place(item: pytest.Item) -> int:
        if not item.path.is_relative_to(ROOT):
            return len(rank)
        return rank.get(item.path.relative_to(ROOT).as_posix(), len(rank))

    items.sort(key=place)
