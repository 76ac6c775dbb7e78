"""A warm parent for the suite's `gpu-service` processes: the heavy imports once, a fork per service.

A service spends about 13 s of CPU importing torch, transformers and sentence-transformers before it does
anything, and the suite starts dozens (most tests want a service of their own settings). So each pytest
worker keeps one zygote: a process that imports those modules once and then forks, per service, a child
that runs the service's `__main__` (`runpy`, as `python -m gpu_service ...` does) with the test's arguments,
environment, working directory and log file. The child is a real, separate process: its own pid, a real
uvicorn server on its own port; kill -9, SIGSTOP and its exit status are what a test sees.

What the fork cannot change is what a module read from the environment when it was imported. So a service
whose environment differs from the zygote's in anything but the service's own settings (`SERVICE_VARIABLES`)
and what the imports set for themselves (torch's `KMP_INIT_AT_FORK`, which a test process has or not depending
on what it imported so far) is started as its own `python -m gpu_service` instead (`refuses`), and so is every
service when `GPU_TEST_ZYGOTE=0`. The zygote refuses to fork if an import started a Python thread (a forked
child would inherit locks no thread will release) or imported a module of `FORK_UNSAFE`; the native thread
pools numpy's and scipy's OpenBLAS start at import shut down before a fork and start again after it, by
OpenBLAS's own `pthread_atfork`.

Protocol, one JSON object per line: the test side writes `{"module", "argv", "env", "cwd", "log", "netns"}`
to the zygote's stdin and reads `{"started": pid}`; when a child ends the zygote reaps it and writes
`{"exited": pid, "code": returncode}` (negative: the signal). stdin's end (the test process gone) kills every
child and ends the zygote; a child dies with the zygote however it ends (PR_SET_PDEATHSIG).
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
from typing import Any, NoReturn

from gpu_service.settings import FALSE_WORDS

WARM_MODULES = (
    "gpu_service.cli", "gpu_service.app", "sentence_transformers", "transformers", "bert_score", "faster_whisper",
    "ctranslate2", "av", "uvicorn",
)
"""What a service imports on its way to serving (each one optional: a module that is not installed is skipped)."""

FORK_UNSAFE = ("onnxruntime",)
"""Modules the zygote must not have imported: onnxruntime opens its telemetry database (SQLite, WAL) and starts a
thread at import, and forked children would share that connection. The service imports it when a voice loads."""

SERVICE_VARIABLES = (
    "GPU_", "MODEL_", "BERTSCORE_", "TORCH_DEVICE", "API_KEY", "ALLOWED_MODELS", "LOG_LEVEL", "PYTEST_",
)
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


def _child(request: dict[str, Any], parent: int, inherited: list[int]) -> NoReturn:
    """In the forked child: become the service the request describes, run it, end as that program would."""
    try:
        _become(request, parent, inherited)
    except BaseException:  # noqa: BLE001 - the log says why the service never started
        traceback.print_exc()
        _finish(1)
    _finish(*_run_main(request["module"]))


def _become(request: dict[str, Any], parent: int, inherited: list[int]) -> None:
    """The request's stdio, namespace, working directory, environment and arguments, in place of the zygote's."""
    for fd in inherited:
        os.close(fd)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (log, 1), (log, 2)):
        os.dup2(fd, target)
    os.close(null)
    os.close(log)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote gone (the test process gone): so are its services
    if os.getppid() != parent:  # it went before prctl took
        os._exit(1)
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


def _run_main(module: str) -> tuple[int, int | None]:
    """`python -m module`: its exit status, and the signal to end with (Python ends by SIGINT on Ctrl-C)."""
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0, None
        print(exc.code, file=sys.stderr)
        return 1, None
    except KeyboardInterrupt:
        traceback.print_exc()
        return 1, signal.SIGINT
    except BaseException:  # noqa: BLE001 - what a Python that dies of it would print
        traceback.print_exc()
        return 1, None
    return 0, None


def _finish(code: int, end_by: int | None = None) -> NoReturn:
    """What the interpreter does on its way out: join its threads (and the executors' workers), run the atexit
    functions, flush; then exit with `code`, or by the signal `end_by`."""
    shutdown = threading._shutdown  # type: ignore[attr-defined]
    for step in (shutdown, atexit._run_exitfuncs, sys.stdout.flush, sys.stderr.flush):
        with contextlib.suppress(BaseException):
            step()
    if end_by is not None:
        signal.signal(end_by, signal.SIG_DFL)
        os.kill(os.getpid(), end_by)
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
    if unsafe := [name for name in FORK_UNSAFE if name in sys.modules]:
        _write({"error": f"imported before a fork: {', '.join(unsafe)}"})
        return
    _write({"ready": True, "import_set": _import_set})
    children: dict[int, int] = {}  # pidfd -> pid
    try:
        _loop(children)
    finally:  # the test process gone, or the zygote failing: no service outlives it
        for pid in children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _loop(children: dict[int, int]) -> None:
    """Fork for each request on stdin, report each child's end, until stdin ends."""
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, None)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.data is not None:
                pidfd, pid = key.fd, key.data
                selector.unregister(pidfd)
                os.close(pidfd)
                del children[pidfd]
                _, status = os.waitpid(pid, 0)
                _write({"exited": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(0, 65536)
            if not chunk:  # the test process is gone
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                sys.stdout.flush()
                sys.stderr.flush()
                parent = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _child(json.loads(line), parent, [_channel, selector.fileno(), *children])
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                selector.register(pidfd, selectors.EVENT_READ, pid)
                _write({"started": pid})


# ---------------------------------------------------------------------------------------------- the test side


class ForkedProcess:
    """A service forked by the zygote, with the parts of `subprocess.Popen` the tests use."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None
        try:  # signals go through a pidfd: once the zygote has reaped it, its pid may be another process's
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None

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
        if self.poll() is None and self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)

    def __del__(self) -> None:
        if getattr(self, "_pidfd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)  # type: ignore[arg-type]

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
        try:
            for line in self.process.stdout:
                message = json.loads(line)
                with self._changed:
                    if "started" in message:
                        self._started.append(message["started"])
                    else:
                        self._exits[message["exited"]] = message["code"]
                    self._changed.notify_all()
        finally:  # the zygote is gone: whoever waits learns it now
            self.process.wait()
            with self._changed:
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
            if not self._changed.wait_for(lambda: self._started or self.process.poll() is not None, timeout=30):
                self.error = "it did not fork within 30 s"  # a late answer would be taken for the next request's
            if self.error is not None or not self._started:
                raise RuntimeError(f"the service zygote failed: {self.error or 'it ended'} (see {self.log_path})")
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
    return os.environ.get("GPU_TEST_ZYGOTE", "1").strip().lower() not in FALSE_WORDS


def zygote(env: dict[str, str]) -> Zygote | None:
    """This test process's zygote, started on first use in `env` (every service's environment before a test adds
    to it: services.service_env()), less the service's own settings; None when `GPU_TEST_ZYGOTE=0` or it cannot
    fork."""
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
