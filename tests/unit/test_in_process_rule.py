"""The rule that keeps tests/unit (`make test-fast`) in-process holds (tests/support/in_process.py): a process
started by a unit test fails it, whatever starts it; the `slow` marker follows the folder; and a unit test
that is slow fails before it runs, in a run of its own (pytest's `pytester`, in this process)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.in_process import ProcessInUnitTest

STARTERS: dict[str, Callable[[], object]] = {
    "subprocess.Popen": lambda: subprocess.Popen([sys.executable, "-c", "pass"]),
    "subprocess.run": lambda: subprocess.run(["true"], check=False),
    "os.system": lambda: os.system("true"),
    "asyncio": lambda: asyncio.run(asyncio.create_subprocess_exec("true")),
}


@pytest.mark.parametrize("start", STARTERS.values(), ids=list(STARTERS))
def test_a_process_started_by_a_unit_test_fails_it(request: pytest.FixtureRequest, start: Callable[[], object]) -> None:
    with pytest.raises(ProcessInUnitTest, match=re.escape(request.node.nodeid)):
        start()


UNIT_AND_OTHER_TESTS = {
    "tests/unit/test_fast.py": "def test_in_process():\n    pass\n",
    "tests/unit/test_starts.py": "import subprocess\n\ndef test_starts_a_cli():\n    subprocess.run(['true'])\n",
    "tests/unit/test_marked.py": "import pytest\n\n@pytest.mark.slow\ndef test_marked_slow():\n    pass\n",
    "tests/unit/test_asks.py": "def test_asks_for_a_service(service):\n    pass\n",
    "tests/service/test_other.py": "def test_outside_unit():\n    pass\n",
}


def test_the_marker_follows_the_folder_and_slow_unit_tests_fail(pytester: pytest.Pytester) -> None:
    for path, source in UNIT_AND_OTHER_TESTS.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(source)
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-p", "no:xdist"]

    fast = pytester.runpytest(*plugins, "-m", "not slow", "--collect-only", "-q")
    selected = sorted(line.split("::")[0] for line in fast.outlines if "::" in line)
    assert selected == ["tests/unit/test_asks.py", "tests/unit/test_fast.py", "tests/unit/test_starts.py"], \
        "`-m 'not slow'` selects tests/unit, less what is marked slow there"

    run = pytester.runpytest(*plugins, "-rA")
    run.assert_outcomes(passed=2, failed=1, errors=2)
    out = run.stdout.str()
    assert "tests/unit/test_starts.py::test_starts_a_cli started a process (subprocess.Popen" in out
    assert "tests/unit/test_marked.py::test_marked_slow is marked slow, but tests/unit is in-process only" in out
    assert "tests/unit/test_asks.py::test_asks_for_a_service uses service, which start processes" in out
