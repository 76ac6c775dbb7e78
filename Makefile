# Two commands for a newcomer: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A CPU build here; on a CUDA host see docs/deployment.md (make TORCH_SPEC="torch --index-url ...").
TORCH_SPEC ?= torch==2.13.0
PORT   ?= 8787

.PHONY: run test test-fast soak bench lint inspector clean speech-tools test-tools

# Two distributions from one checkout: the bridge (+ gpu_protocol) at the root, the service in service/.
$(VENV)/.installed: pyproject.toml service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]' -e ./service
	touch $@

## speech-tools: espeak-ng and ffmpeg (Debian), which make the test speech; installed once, skipped when present
speech-tools:
	@command -v espeak-ng >/dev/null && command -v ffmpeg >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq espeak-ng ffmpeg)

## test-tools: what the suite runs besides Python and npm: the speech tools, and wrk (bench/peers.py's load,
## whose Lua script the suite checks); installed once, skipped when present
test-tools: speech-tools
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

## run: a local GPU service (bundled all-MiniLM-L6-v2, Whisper tiny.en for speech to text and the Piper voice
## en_US-joe-medium for speech synthesis unless MODEL_TRANSCRIBE / MODEL_SPEAK say otherwise; MODEL_SPEAK= turns
## synthesis off, and with it the need for espeak-ng) + the MCP bridge on streamable HTTP
MODEL_TRANSCRIBE ?= tiny.en
MODEL_SPEAK ?= en_US-joe-medium
run: $(VENV)/.installed $(if $(MODEL_SPEAK),speech-tools)
	HF_HUB_OFFLINE=1 MODEL_TRANSCRIBE=$(MODEL_TRANSCRIBE) MODEL_SPEAK=$(MODEL_SPEAK) $(VENV)/bin/gpu-bridge --transport http --host 127.0.0.1 --port $(PORT)

## test: the whole test suite (under 10 minutes on 2 cores); fails if the run changed any file in the tree.
## Two pytest-xdist workers, one test file at a time each (much of the suite waits on subprocesses and npm);
## PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
TREE_STATE = { git status --porcelain; git diff; } 2>/dev/null | cksum
test: $(VENV)/.installed test-tools
	@before="$$($(TREE_STATE))"; \
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS); status=$$?; \
	if [ "$$before" != "$$($(TREE_STATE))" ]; then \
		echo "make test: the test run changed files in the work tree (tests must not):"; git status --short; exit 1; \
	fi; exit $$status

## test-fast: the in-process tests only (tests/unit), for the edit-run loop (about a minute on 2 cores): no
## service, bridge, npm or CLI processes. Every test outside tests/unit is marked `slow` (so `-m "not slow"`
## selects the same tests); a test in tests/unit that starts a process, is marked slow or asks for a fixture
## declared with `@process_fixture` fails in every run, `make test` included (tests/support/in_process.py),
## so a slow test cannot land in this set unnoticed. `make test` runs everything.
test-fast: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

## soak: the whole suite plus the long fault and load runs and the Ray Serve cluster tests of tests/soak
## (installs the `ray` extra); rewrites docs/reliability.md on purpose
soak: $(VENV)/.installed
	$(PY) -m pip install --quiet schemathesis -e './service[ray]'
	HF_HUB_OFFLINE=1 GPU_BRIDGE_SOAK=1 GPU_BRIDGE_WRITE_REPORTS=1 $(PY) -m pytest -q -s

bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m bench.run_all

lint: $(VENV)/.installed
	$(PY) -m pip install --quiet ruff mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy mcp_bridge gpu_service gpu_protocol
	$(VENV)/bin/lint-imports

## inspector: install the MCP Inspector CLI (npm) used by the Inspector tests
inspector:
	npm install --no-save --no-audit --no-fund @modelcontextprotocol/inspector@2.12.0

clean:
	rm -rf $(VENV) .pytest_cache
