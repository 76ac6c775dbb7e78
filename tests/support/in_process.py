"""The in-process rule: tests/unit is what `make test-fast` runs, and its tests start no process.

The marker follows the folder. Every test outside tests/unit is marked `slow` when it is collected, so
`pytest -m "not slow"` and `pytest tests/unit` select the same tests. Inside tests/unit:

- a test that starts a process (a service, a bridge, npm, a CLI: anything through `subprocess`,
  `asyncio`'s subprocesses, `os.system`, fork, spawn or exec) fails with `ProcessInUnitTest`. The check is
  a Python audit hook (PEP 578) on those events: it replaces nothing and does nothing while any other test
  runs, and raises (which aborts the call) only while a test of tests/unit runs, its fixtures included;
- a test marked `slow`, or one asking for a fixture declared with `@process_fixture`, fails before its
  fixtures start anything.

So a slow test cannot land in the fast set unnoticed, in any run (`make test` included): move it to the
folder of its subject (service/, bridge/, clients/, repo/, soak/).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

PROCESS_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork", "os.forkpty",
})
"""The audit events that start a process (https://docs.python.org/3/library/audit_events.html)."""

PROCESS_FIXTURES: set[str] = set()
"""The fixtures that start processes (services, bridges, npm), declared with `@process_fixture`."""

REFUSED = pytest.StashKey[str]()
"""Why a test of tests/unit may not run as it is (set at collection, reported at its setup)."""

_unit_test_running: str | None = None  # the node id of the unit test now running, if one is
_hook_added = False


class ProcessInUnitTest(RuntimeError):
    """A test of tests/unit started a process."""


def process_fixture(**kwargs: Any) -> Callable[[F], F]:
    """`pytest.fixture(**kwargs)` for a fixture that starts processes: a test of tests/unit that asks for
    it fails before it starts anything (its tests belong in another folder, where every test is `slow`)."""

    def declare(fixture: F) -> F:
        PROCESS_FIXTURES.add(kwargs.get("name", fixture.__name__))
        return pytest.fixture(**kwargs)(fixture)  # type: ignore[no-any-return]

    return declare


def _refuse_processes(event: str, args: tuple[Any, ...]) -> None:
    if _unit_test_running is not None and event in PROCESS_EVENTS:
        started = args[1] if event == "subprocess.Popen" else args[:1]
        raise ProcessInUnitTest(
            f"{_unit_test_running} started a process ({event}: {started!r:.120}), but tests/unit is in-process "
            "only (`make test-fast`): move the test to the folder of its subject, where tests may start processes")


def add_audit_hook() -> None:
    """Add the hook once per test process (audit hooks cannot be removed; it is idle outside unit tests)."""
    global _hook_added
    if not _hook_added:
        sys.addaudithook(_refuse_processes)
        _hook_added = True


@contextmanager
def in_process_only(nodeid: str | None) -> Iterator[None]:
    """While this runs, a process started by anyone in this test process fails as `nodeid`'s (None: allowed)."""
    global _unit_test_running
    outer, _unit_test_running = _unit_test_running, nodeid
    try:
        yield
    finally:
        _unit_test_running = outer


def unit_folder(config: pytest.Config) -> Path:
    return config.rootpath / "tests" / "unit"


def is_unit_test(item: pytest.Item) -> bool:
    return item.path.is_relative_to(unit_folder(item.config))


def sort_by_folder(items: list[pytest.Item]) -> None:
    """Mark every test outside tests/unit `slow`; note why a unit test that is slow may not run."""
    for item in items:
        if not is_unit_test(item):
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("slow"):
            item.stash[REFUSED] = f"{item.nodeid} is marked slow, but tests/unit is in-process only"
        elif used := sorted(PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))):
            item.stash[REFUSED] = (f"{item.nodeid} uses {', '.join(used)}, which start processes, but tests/unit "
                                   "is in-process only")


def refuse_if_slow(item: pytest.Item) -> None:
    if reason := item.stash.get(REFUSED, None):
        pytest.fail(f"{reason}: move the test to the folder of its subject (`make test-fast` runs tests/unit)",
                    pytrace=False)
