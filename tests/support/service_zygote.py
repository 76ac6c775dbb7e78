"""A warm parent for the suite's `gpu-service` processes: the heavy imports once, a fork per service.

A service spends about 13 s of CPU importing torch, transformers and sentence-transformers before it does
anything, and the suite starts dozens (most tests want a service of their own settings). So each pytest
worker keeps one zygote: a process that imports those modules once and then forks, per service, a child
that runs the service's `__main__` (`runpy`, as `python -m gpu_service ...` does) with the test's arguments,
environment, working directory and log file. The child is a real, separate process: its own pid, a real
uvicorn server on its own port; kill -9, SIGSTOP and its exit status are what a test sees.

What the fork cannot change is what a module read from the environment when it was imported. So a service
whose environment differs from the zygote's in anything but the service's own settings (`SERVICE_VARIABLES`)
and what the imports set for themselves (torch's `KMP_INIT_AT_FORK`, which a test process
has or not depending on what it imported so far) is started as its own `python -m gpu_service` instead (`refuses`), and so is every service when
`GPU_TEST_ZYGOTE=0`. The zygote refuses to fork if an import started a thread (a forked child would inherit
locks no thread will release; the native thread pools numpy's and scipy's OpenBLAS start at import shut down
before a fork and start again after it, by OpenBLAS's own `pthread_atfork`).

Protocol, one JSON object per line: the test side writes `{"module", "argv", "env", "cwd", "log", "netns"}` to the
zygote's stdin and reads `{"started": pid}`; when a child ends the zygote reaps it and writes
`{"exited": pid, "code": returncode}` (negative: the signal). stdin's end (the test process gone) kills every
child and ends the zygote.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import runpy
import selectors
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

WARM_MODULES = (
    "gpu_service.cli", "gpu_service.app", "sentence_transformers", "transformers", "bert_score", "faster_whisper",
    "ctranslate2", "onnxruntime", "av", "uvicorn",
)
"""What a service imports on its way to serving (each one optional: a module that is not installed is skipped)."""

SERVICE_VARIABLES = ("GPU_", "MODEL_", "BERTSCORE_", "TORCH_DEVICE", "API_KEY", "ALLOWED_MODELS", "LOG_LEVEL", "PYTEST_")
"""Environment variables a forked service may differ in: the service's own settings (docs/configuration.md),
read when it starts, not by an import (and pytest's own)."""

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000


# ---------------------------------------------------------------------------------------------- the zygote


_channel = 1
"""The fd the zygote answers on: its stdout as started, moved aside so that nothing an import prints mixes in."""


_import_set: dict[str, str] = {}
"""Environment variables the imports set (torch's KMP_INIT_AT_FORK, ...): ignored when comparing environments."""


def _write(message: dict[str, Any]) -> None:
    os.write(_channel, (json.dumps(message) + "\n").encode())


def _child(request: dict[str, Any], inherited: list[int]) -> None:
    """In the forked child: become the service the request describes; never returns."""
    code = 1
    try:
        for fd in inherited:
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if request.get("netns"):  # what `nsenter --net=...` does (os.setns is Python 3.12's)
            namespace = os.open(request["netns"], os.O_RDONLY)
            if libc.setns(namespace, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {request['netns']}")
            os.close(namespace)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(_import_set)  # what the imports set for themselves, as they would in a fresh process
        os.environ.update(request["env"])
        sys.argv = [request["module"], *request["argv"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what a Python that dies of it would print
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """The zygote's loop (`python -m tests.support.service_zygote`)."""
    global _channel, _import_set
    _channel = os.dup(1)
    os.dup2(2, 1)
    before = dict(os.environ)
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _import_set = {k: v for k, v in os.environ.items() if before.get(k) != v}
    if threading.active_count() != 1:  # native BLAS pools (OpenBLAS) are rebuilt after a fork by their own atfork
        _write({"error": f"the imports started Python threads: {threading.enumerate()}"})
        return
    _write({"ready": True, "import_set": _import_set})
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, None)
    children: dict[int, int] = {}  # pidfd -> pid
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.data is None:
                chunk = os.read(0, 65536)
                if not chunk:  # the test process is gone
                    for pid in children.values():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    request = json.loads(line)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        _child(request, [_channel, selector.fileno(), *children])
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = pid
                    selector.register(pidfd, selectors.EVENT_READ, pid)
                    _write({"started": pid})
            else:
                pidfd, pid = key.fd, key.data
                selector.unregister(pidfd)
                os.close(pidfd)
                del children[pidfd]
                _, status = os.waitpid(pid, 0)
                _write({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


# ---------------------------------------------------------------------------------------------- the test side


class ForkedProcess:
    """A service forked by the zygote, with the parts of `subprocess.Popen` the tests use."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"forked gpu-service {self.pid}", timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """One pytest worker's zygote process and the exit codes it reports."""

    def __init__(self, env: dict[str, str]) -> None:
        from tests.support import ROOT

        self.env = env
        self.log_path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"gpu-service-zygote-{os.getpid()}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.service_zygote"], cwd=ROOT, env=self.env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            )
        self._exits: dict[int, int] = {}
        self._started: list[int] = []
        self._changed = threading.Condition()
        self._spawning = threading.Lock()
        """One fork at a time: the zygote answers `started` in the order it was asked."""
        self.error: str | None = None
        assert self.process.stdout is not None
        first = json.loads(self.process.stdout.readline() or b'{"error": "the zygote ended at start"}')
        if "error" in first:
            self.error = first["error"]
            self.close()
            return
        self.import_set: dict[str, str] = first["import_set"]
        threading.Thread(target=self._read, name="service-zygote", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            with self._changed:
                if "started" in message:
                    self._started.append(message["started"])
                else:
                    self._exits[message["exited"]] = message["code"]
                self._changed.notify_all()

    def refuses(self, env: dict[str, str]) -> str | None:
        """Why a service with `env` may not be forked (see the module docstring); None when it may."""
        if self.error is not None or self.process.poll() is not None:
            return f"the zygote is gone ({self.error or self.process.returncode})"
        keys = set(env) | set(self.env)
        differ = sorted(k for k in keys if env.get(k) != self.env.get(k)
                        and not k.startswith(SERVICE_VARIABLES) and k not in self.import_set)
        return f"its environment differs from the zygote's in {', '.join(differ)}" if differ else None

    def spawn(self, module: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path,
              netns: str | None = None) -> ForkedProcess:
        """`python -m <module> <argv>`, forked; `netns`: a network namespace to run it in (`/proc/<pid>/ns/net`)."""
        request = {"module": module, "argv": argv, "env": env, "cwd": str(cwd), "log": str(log), "netns": netns}
        assert self.process.stdin is not None
        with self._spawning, self._changed:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            if not self._changed.wait_for(lambda: self._started, timeout=30):
                raise RuntimeError("the service zygote did not fork within 30 s")
            return ForkedProcess(self, self._started.pop(0))

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or self.process.poll() is not None, timeout)
            if pid not in self._exits and self.process.poll() is not None:
                return -signal.SIGKILL  # the zygote died: so did its children (they die with it)
            return self._exits.get(pid)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_zygote: Zygote | None = None
_lock = threading.Lock()


def enabled() -> bool:
    """Whether the tests fork their services (`GPU_TEST_ZYGOTE`, default 1)."""
    return os.environ.get("GPU_TEST_ZYGOTE", "1").strip().lower() not in ("0", "false", "no", "off")


def zygote(env: dict[str, str]) -> Zygote | None:
    """This test process's zygote, started on first use (in `env`: the services' environment, less their own
    settings); None when `GPU_TEST_ZYGOTE=0` or it cannot fork."""
    global _zygote
    if not enabled():
        return None
    with _lock:
        if _zygote is None:
            _zygote = Zygote({k: v for k, v in env.items() if not k.startswith(SERVICE_VARIABLES)})
            atexit.register(_zygote.close)
        return None if _zygote.error is not None else _zygote


if __name__ == "__main__":
    serve()
