"""What the commands in the documentation may name, and the checks of one command: make targets and
variables, our console scripts' flags, pip packages and extras, Python modules, service routes, files in the
checkout, environment variables (used by tests/test_docs.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from mcp_bridge import cli as bridge_cli
from tests.support.doc_pages import ROOT

EXTERNAL_PROGRAMS = {
    "npm", "npx", "openclaw", "docker", "kubectl", "serve", "systemctl", "useradd", "mkdir", "chown", "chmod",
    "cp", "echo", "tee", "kill", "openssl", "huggingface-cli", ".", "cd", "git",
}


OTHER_PROGRAMS_FLAGS = {"--accept-capabilities", "--profile", "--url-prefix", "--repeats"}
"""Flags named alone in the prose that are OpenClaw's, Infinity's or a benchmark's, not our console scripts'."""


THIRD_PARTY_PACKAGES = {"torch", "nvidia-cublas-cu12", "nvidia-cudnn-cu12", "schemathesis"}


EXTERNAL_VARIABLES = {"HF_HOME", "LD_LIBRARY_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}


REPO_PATH = re.compile(r"^(?:\./)?(?:(?:deploy|docs|bench|tests|gpu_service|mcp_bridge|gpu_protocol|service|openclaw)/"
                       r"[\w./*-]*|Makefile|pyproject\.toml|openclaw\.plugin\.json|releases\.json|\.mcp\.json)$")


@cache
def make_targets_and_variables() -> tuple[frozenset[str], frozenset[str]]:
    text = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([\w-]+):(?!=)", text, re.M)
    variables = re.findall(r"^(\w+)\s*[?:]?=", text, re.M)
    return frozenset(targets), frozenset(variables)


@cache
def options_of(script: str) -> frozenset[str]:
    """The flags a console script's argument parser takes, read from its --help."""
    parse = {"gpu-bridge": bridge_cli.parse_args, "gpu-service": _service_parse_args()}[script]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        parse(["--help"])
    return frozenset(re.findall(r"(?<![\w-])--[\w-]+", out.getvalue()))


def _service_parse_args() -> Callable[[list[str]], Any]:
    from gpu_service.cli import parse_args

    return parse_args


def script_problems(script: str, args: list[str]) -> list[str]:
    parse = {"gpu-bridge": bridge_cli.parse_args, "gpu-service": _service_parse_args()}[script]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse(args)
    except SystemExit as exit_:
        if exit_.code:
            return [f"{script} {' '.join(args)}: {err.getvalue().strip().splitlines()[-1]}"]
    return []


def make_problems(args: list[str]) -> list[str]:
    targets, variables = make_targets_and_variables()
    return [f"make: no variable {a.split('=')[0]}" if "=" in a else f"make: no target {a}"
            for a in args if not a.startswith("-") and (a.split("=")[0] not in variables if "=" in a else a not in targets)]


@cache
def extras() -> dict[str, frozenset[str]]:
    """Each of our distributions, by its name and by its checkout folder -> its extras."""
    found = {}
    for folder, spellings in ((".", (".",)), ("service", ("service", "./service"))):
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        for name in (project["name"], *spellings):
            found[name] = frozenset(project.get("optional-dependencies", {}))
    return found


def pip_problems(args: list[str]) -> list[str]:
    problems, words = [], iter(args)
    for word in words:
        if word in ("--index-url", "-r", "-c", "--extra-index-url"):
            next(words, None)
            continue
        if word.startswith("-") or word in ("install", "-e"):
            continue
        name, extra = re.match(r"([^\[=<>!~]+)(?:\[([\w,-]+)\])?", word).groups()  # type: ignore[union-attr]
        if name in extras():
            problems += [f"pip: {name} has no extra {e!r}" for e in (extra or "").split(",") if e and e not in extras()[name]]
        elif name not in THIRD_PARTY_PACKAGES:
            problems.append(f"pip: {word!r} is none of ours nor a package the docs are known to need")
    return problems


def python_problems(args: list[str]) -> list[str]:
    if args[:1] == ["-m"] and len(args) > 1 and importlib.util.find_spec(args[1]) is None:
        return [f"python -m {args[1]}: no such module"]
    return []


@cache
def service_routes() -> frozenset[tuple[str, str]]:
    """(method, path) of every route the service serves, path parameters written `{}`."""
    from fastapi.routing import APIRoute

    from gpu_service.app import create_app
    from gpu_service.settings import Settings

    routes = [r for r in create_app(Settings(warm_defaults=False)).routes if isinstance(r, APIRoute)]
    return frozenset((method, re.sub(r"\{\w*\}", "{}", r.path)) for r in routes if r.include_in_schema for method in r.methods or ())


def curl_problems(args: list[str]) -> list[str]:
    problems = []
    for arg in args:
        found = re.match(r"(?:https?://)?[\w.-]+:(8765|8787)(/[^\s?]*)", arg)
        if found and found.group(1) == "8765" and not any(p == found.group(2) for _, p in service_routes()):
            problems.append(f"curl: the service has no route {found.group(2)}")
    return problems


CHECKERS: dict[str, Callable[[list[str]], list[str]]] = {
    "make": make_problems,
    "pip": pip_problems,
    "python": python_problems,
    "python3": python_problems,
    "python3.11": python_problems,
    "curl": curl_problems,
    "gpu-bridge": lambda args: script_problems("gpu-bridge", args),
    "gpu-service": lambda args: script_problems("gpu-service", args),
}


def command_problems(words: list[str]) -> list[str]:
    problems: list[str] = []
    assignments = []
    while words and re.match(r"[A-Za-z_]\w*=", words[0]):
        assignments.append(words[0].split("=")[0])
        words = words[1:]
    if not words:
        return []  # a shell variable, not a program's environment
    problems += [f"unknown variable {name}" for name in assignments if name not in known_variables()]
    if words[0] == "sudo":
        words = words[3:] if words[1:2] == ["-u"] else words[1:]
    program, args = (words[0] if words[0] == "." else Path(words[0]).name), words[1:]
    for arg in args:
        path = re.sub(r"\[[\w,]+\]$", "", arg)
        if REPO_PATH.match(path) and not any(ROOT.glob(path.removeprefix("./"))):
            problems.append(f"{program}: no file {path} in the checkout")
    if program in CHECKERS:
        problems += CHECKERS[program](args)
    elif program not in EXTERNAL_PROGRAMS:
        problems.append(f"{program!r}: a program no check knows (add it to EXTERNAL_PROGRAMS if it is someone else's)")
    return problems


def string_literals(*folders: str) -> set[str]:
    files = [f for folder in folders for f in (ROOT / folder).rglob("*.py")]
    return {name for f in files for name in re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", f.read_text())}


@cache
def known_variables() -> frozenset[str]:
    """Every variable a name in the docs may be: one the code, the tests or the benchmarks name, a Makefile
    variable, or someone else's (Hugging Face's, the loader's, Ray's)."""
    plugin = {name for js in (ROOT / "openclaw").glob("*.js")
              for name in re.findall(r"\b([A-Z][A-Z0-9_]+)\b", js.read_text())}
    return frozenset(string_literals("gpu_service", "mcp_bridge", "gpu_protocol", "tests", "bench")
                     | set(make_targets_and_variables()[1]) | plugin | EXTERNAL_VARIABLES)
