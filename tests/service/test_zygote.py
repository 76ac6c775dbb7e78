"""The suite's services come from a warm zygote (tests/support/service_zygote.py): forked, they are still real
processes with their own settings, signals and exit status; a service whose environment an import would read
differently is started as its own `python -m gpu_service`."""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest

from tests.support.service_zygote import ForkedProcess, enabled
from tests.support.services import ServiceProcess

pytestmark = pytest.mark.skipif(not enabled(), reason="GPU_TEST_ZYGOTE=0: every service is its own process")

QUICK = {"GPU_WARM_DEFAULTS": "0"}
"""Nothing loaded at start: these tests are about the process, not the models."""


def test_a_forked_service_has_its_own_settings_and_dies_of_kill_9(service_factory: type[ServiceProcess]) -> None:
    svc = service_factory(env={**QUICK, "API_KEY": "zygote-test-key-1234"}).start()
    assert isinstance(svc.process, ForkedProcess)
    assert httpx.get(f"{svc.url}/info").status_code == 401  # its API_KEY, not the zygote's environment
    assert httpx.get(f"{svc.url}/info", headers={"X-API-Key": "zygote-test-key-1234"}).status_code == 200
    svc.signal(signal.SIGKILL)
    assert svc.process.wait(timeout=10) == -signal.SIGKILL
    assert svc.process.poll() == -signal.SIGKILL


def test_a_stopped_service_reports_how_it_ended(service_factory: type[ServiceProcess]) -> None:
    svc = service_factory(env=QUICK).start()
    svc.stop()
    assert svc.process is not None and svc.process.returncode in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{svc.url}/health")


def test_bad_arguments_end_the_forked_service_as_they_end_the_program(service_factory: type[ServiceProcess]) -> None:
    svc = service_factory(env=QUICK, args=["--no-such-flag"]).start(wait=False)
    assert isinstance(svc.process, ForkedProcess)
    assert svc.process.wait(timeout=30) == 2  # argparse's usage error
    assert "--no-such-flag" in svc.logs()


def test_an_environment_an_import_reads_gets_its_own_interpreter(service_factory: type[ServiceProcess]) -> None:
    svc = service_factory(env={**QUICK, "OMP_NUM_THREADS": "1"}).start()
    assert isinstance(svc.process, subprocess.Popen)
    assert httpx.get(f"{svc.url}/health").status_code == 200
