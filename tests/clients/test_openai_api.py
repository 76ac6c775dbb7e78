"""The pool behind OpenAI's embeddings API: `gpu-bridge --transport http` serves /v1/embeddings and
/v1/models next to /mcp, and the official `openai` client gets the pool's vectors, failover and errors.

Every bridge here is the real console entry (`python -m mcp_bridge`) on a free port (`--port 0`, read
from its ready line) with `--exit-with-stdin`, over real `gpu-service` processes on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_protocol.priority import PRIORITY_HEADER
from mcp_bridge.http_api.errors import pool_error
from mcp_bridge.pool.errors import HostRejected, NoHostAvailable, PoolBusy, PoolError, PoolTimeout
from tests.support.bridges import bridge_env
from tests.support.service_probes import batches_run
from tests.support.services import ServiceProcess
from tests.support.waiting import unchanged_for, wait_until

openai = pytest.importorskip("openai")

TOKEN = "openai-api-test-token-0123456789"
READY = re.compile(r"is ready at (http://\S+?)/mcp\s")
# Vectors of the same texts through the bridge and straight from a host may be computed in different
# batches (the host's scheduler mixes concurrent requests), and on a CPU a different batch layout can
# change the last bits of a float: compare with a tolerance, never for equality.
TOLERANCE = 1e-5


@dataclass
class OpenAIBridge:
    base_url: str
    """`http://127.0.0.1:<port>/v1`"""
    process: subprocess.Popen[str]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def openai_bridge(urls: list[str], tmp_path: Path, config: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> Iterator[OpenAIBridge]:
    """A `gpu-bridge --transport http --port 0 --exit-with-stdin` over `urls`; stopped by closing its stdin."""
    log = tmp_path / f"bridge-{len(list(tmp_path.glob('bridge-*.log')))}.log"
    args = [sys.executable, "-m", "mcp_bridge", "--transport", "http", "--port", "0", "--exit-with-stdin",
            *(a for u in urls for a in ("--url", u))]
    full_env = {**bridge_env(), "GPU_BRIDGE_AUTH_TOKEN": TOKEN, **(env or {})}
    if config is not None:
        full_env["GPU_BRIDGE_CONFIG"] = json.dumps(config)
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True)
    try:
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 60
        while not (match := READY.search(seen)):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"the bridge did not get ready:\n{log.read_text()}"
            seen += line
        yield OpenAIBridge(f"{match.group(1)}/v1", proc, log)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(bridge: OpenAIBridge, token: str = TOKEN) -> Any:
    return openai.OpenAI(base_url=bridge.base_url, api_key=token, max_retries=0, timeout=60)


def host_vectors(svc: ServiceProcess, texts: list[str], **extra: Any) -> list[list[float]]:
    response = httpx.post(f"{svc.url}/embed", json={"texts": texts, **extra}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["embeddings"]  # type: ignore[no-any-return]


def close_to(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < TOLERANCE


TEXTS = ["The espresso machine needs descaling.", "Water the tomatoes twice a week.", "Tyres are in the loft.",
         "A GPU pool behind one URL.", "Short."]


# --------------------------------------------------------------------------- the OpenAI client


def test_openai_client_gets_the_pools_vectors(service: ServiceProcess, tmp_path: Path) -> None:
    with openai_bridge([service.url], tmp_path) as bridge:
        c = client(bridge)
        # The client asks for base64 unless told otherwise and decodes it itself.
        packed = c.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)
        floats = c.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
        one = c.embeddings.create(model="all-MiniLM-L6-v2", input="A GPU pool behind one URL.")
        short = c.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[:2], dimensions=64)
        listed = {m.id: m for m in c.models.list()}
    expected = host_vectors(service, TEXTS)
    assert [d.index for d in packed.data] == list(range(len(TEXTS))) and packed.model == "all-MiniLM-L6-v2"
    assert all(close_to(d.embedding, e) for d, e in zip(packed.data, expected, strict=True))
    assert all(close_to(d.embedding, e) for d, e in zip(floats.data, expected, strict=True))
    assert len(one.data) == 1 and close_to(one.data[0].embedding, expected[3])
    assert all(len(d.embedding) == 64 and abs(sum(x * x for x in d.embedding) - 1) < 1e-5 for d in short.data)
    # usage: the tokens the model read, as the host counts them (its own /v1/embeddings says the same)
    own = httpx.post(f"{service.url}/v1/embeddings", json={"input": TEXTS}, timeout=60).json()["usage"]
    assert packed.usage.prompt_tokens == packed.usage.total_tokens == own["prompt_tokens"] > len(TEXTS)
    model = listed["all-MiniLM-L6-v2"]
    assert model.model_extra["dimensions"] == 384 and model.model_extra["max_input_tokens"] == 256
    assert model.model_extra["default"] is True and model.model_extra["hosts"] == ["127.0.0.1:" + str(service.port)]
    assert "POST /v1/embeddings: 5 texts, model all-MiniLM-L6-v2, on 127.0.0.1:" in bridge.log_text()


def test_the_token_and_bad_requests_get_openai_errors(service: ServiceProcess, tmp_path: Path) -> None:
    config = {"limits": {"maxBatchSize": 3, "maxTextLength": 50}}
    with openai_bridge([service.url], tmp_path, config=config) as bridge:
        with pytest.raises(openai.AuthenticationError) as refused:
            client(bridge, token="wrong-token").embeddings.create(model="all-MiniLM-L6-v2", input="x")
        assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
        bare = httpx.post(f"{bridge.base_url}/embeddings", json={"input": "x"})
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert set(bare.json()["error"]) == {"message", "type", "param", "code"}
        mcp = httpx.post(bridge.base_url.replace("/v1", "/mcp"), json={})
        assert mcp.status_code == 401 and "detail" in mcp.json(), "MCP keeps its own answer"
        c = client(bridge)
        cases = [
            ({"input": ["ok", "  "]}, 422, "input[1] is blank"),
            ({"input": [[1, 2]]}, 422, "token arrays are not supported"),
            ({"input": ["a", "b", "c", "d"]}, 413, "at most 3 per request (limits.maxBatchSize)"),
            ({"input": ["ok", "x" * 51]}, 422, "input[1] has 51 characters; at most 50"),
            ({"input": "ok", "encoding_format": "int8"}, 422, "encoding_format"),
            ({"input": "ok", "model": "not-a-served-model"}, 403, "not-a-served-model"),
            ({"input": "ok", "dimensions": 4096}, 422, "larger than model"),
        ]
        for body, status, needle in cases:
            with pytest.raises(openai.APIStatusError) as err:
                c.post("/embeddings", body=body, cast_to=httpx.Response)
            assert err.value.status_code == status and needle in err.value.message, (body, err.value.message)
            assert err.value.body["type"].endswith("_error") and TOKEN not in err.value.message
        raw = httpx.post(f"{bridge.base_url}/embeddings", content=b"{nope", headers={"Authorization": f"Bearer {TOKEN}"})
        assert raw.status_code == 400 and "not valid JSON" in raw.json()["error"]["message"]


def test_models_lists_the_pools_models_and_the_hosts_that_did_not_answer(
    service: ServiceProcess, tmp_path: Path
) -> None:
    config = {"hosts": [{"name": "up", "url": service.url}, {"name": "down", "url": "http://127.0.0.1:9"},
                        {"name": "tei", "url": "http://127.0.0.1:9", "type": "tei", "model": "bge-small"}]}
    with openai_bridge([], tmp_path, config=config) as bridge:
        listed = httpx.get(f"{bridge.base_url}/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        ids = [m.id for m in client(bridge).models.list()]  # the OpenAI client ignores the extra fields
    assert ids == ["all-MiniLM-L6-v2", "bge-small"]
    by_id = {m["id"]: m for m in listed["data"]}
    assert by_id["all-MiniLM-L6-v2"]["hosts"] == ["up"] and by_id["all-MiniLM-L6-v2"]["default"] is True
    assert by_id["bge-small"]["hosts"] == ["tei"] and "dimensions" not in by_id["bge-small"]
    assert [e["host"] for e in listed["host_errors"]] == ["down"], "a tei host has no /info: not an error"


def test_pool_errors_map_to_the_statuses_openai_clients_act_on() -> None:
    assert pool_error(PoolBusy("every host is busy", 7.2)).status == 429
    assert pool_error(PoolBusy("every host is busy", 7.2)).response().headers["retry-after"] == "7"
    assert pool_error(NoHostAvailable("no host")).status == 503
    assert pool_error(PoolTimeout("too slow")).status == 504
    assert pool_error(HostRejected("h", 413, "too large")).status == 413
    assert pool_error(HostRejected("h", 401, "wrong key")).status == 502, "the bridge's key, not the caller's"
    assert pool_error(PoolError("vectors of different sizes")).status == 502


def test_busy_hosts_answer_429_with_retry_after(service_factory: type[ServiceProcess], tmp_path: Path) -> None:
    """A host whose queue is full answers 429 + Retry-After; when every host still does at the deadline,
    the bridge tells its client the same (429 + Retry-After), not that it timed out. The filler is marked
    interactive, the class of the one-text call (each class has its own queue cap: docs/sharing.md)."""
    svc = service_factory(env={"GPU_MAX_QUEUE": "8", "GPU_MAX_BATCH_SIZE": "4"}).start()
    filler = [f"a long text that keeps the host's queue full, number {i}, " * 8 for i in range(3000)]
    hog = threading.Thread(target=lambda: httpx.post(
        f"{svc.url}/embed", json={"texts": filler}, headers={"X-Request-Id": "hog", PRIORITY_HEADER: "interactive"},
        timeout=600))
    hog.start()
    try:
        wait_until(lambda: httpx.get(f"{svc.url}/status").json()["queue_depth"] > 8, timeout=60, interval=0.1,
                   message="the filler never queued")
        with openai_bridge([svc.url], tmp_path, env={"GPU_BRIDGE_TIMEOUT": "3"}) as bridge:
            with pytest.raises(openai.RateLimitError) as busy:
                client(bridge).embeddings.create(model="all-MiniLM-L6-v2", input=["one more"])
    finally:
        httpx.post(f"{svc.url}/cancel/hog")
        hog.join(timeout=60)
    assert busy.value.status_code == 429 and int(busy.value.response.headers["retry-after"]) >= 1
    assert "every host is busy" in busy.value.message and "GPU_MAX_QUEUE" in busy.value.message
    assert busy.value.code == "hosts_busy"


# --------------------------------------------------------------------------- failover, cancellation


@pytest.mark.anyio
async def test_120_concurrent_calls_with_one_of_two_hosts_killed_lose_none(
    service_factory: type[ServiceProcess], service: ServiceProcess, tmp_path: Path
) -> None:
    # `a` is killed, so it is the test's own; `b`, the survivor, only answers: the shared service.
    a, b = service_factory().start(), service
    with openai_bridge([a.url, b.url], tmp_path) as bridge:
        # max_retries=0: every call that succeeds was saved by the bridge's failover, not by a client retry.
        c = openai.AsyncOpenAI(base_url=bridge.base_url, api_key=TOKEN, max_retries=0, timeout=120)
        finished = 0

        async def call(i: int) -> Any:
            nonlocal finished
            answer = await c.embeddings.create(model="all-MiniLM-L6-v2", input=[f"call {i}, text {j}" for j in range(4)])
            finished += 1
            return answer

        calls = [asyncio.ensure_future(call(i)) for i in range(120)]
        while finished < 10 and not all(t.done() for t in calls):
            await asyncio.sleep(0.02)
        a.kill()  # kill -9 with about 110 calls in flight
        in_flight_at_kill = 120 - finished
        answers = await asyncio.gather(*calls)
        await c.close()
        log = bridge.log_text()
    assert in_flight_at_kill > 50, "the kill came too late to test anything"
    assert len(answers) == 120 and all(len(r.data) == 4 and len(r.data[0].embedding) == 384 for r in answers)
    expected = host_vectors(b, [f"call 119, text {j}" for j in range(4)])
    assert all(close_to(d.embedding, e) for d, e in zip(answers[119].data, expected, strict=True))
    served = re.findall(r"POST /v1/embeddings: 4 texts, model \S+, on (\S+) in", log)
    assert len(served) == 120 and f"127.0.0.1:{b.port}" in served
    assert f"host 127.0.0.1:{a.port}:" in log, "the pool saw host a fail and went on without it"


def test_a_client_that_goes_away_cancels_the_work_on_the_hosts(
    small_batch_service: ServiceProcess, tmp_path: Path
) -> None:
    """What OpenClaw's AbortSignal does: the HTTP client drops the request, and the bridge cancels the
    shards on the hosts (their jobs end, no more batches run), not only its own wait for them."""
    svc = small_batch_service
    texts = [f"a long text to keep the host busy, number {i}, " * 6 for i in range(2000)]
    before = batches_run(svc.url)

    def batches() -> float:
        return batches_run(svc.url) - before

    with openai_bridge([svc.url], tmp_path, config={"shardSize": 5000}) as bridge:
        with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection when it gives up
            httpx.post(f"{bridge.base_url}/embeddings", json={"input": texts}, timeout=httpx.Timeout(60, read=2),
                       headers={"Authorization": f"Bearer {TOKEN}"})
        wait_until(lambda: httpx.get(f"{svc.url}/status").json()["active_jobs"] == [], timeout=10, interval=0.1,
                   message="the host should drop the cancelled job")
        # The batch already on the device finishes; nothing after it starts. Wait for the count to
        # settle (3 s without a new batch; an uncancelled job adds one every ~0.1 s).
        wait_until(unchanged_for(batches, quiet=3.0), timeout=60, interval=0.25,
                   message="batches kept running after the client went away")
        assert batches() < 2000 / 16, "the job ran to completion"
        assert len(client(bridge).embeddings.create(model="all-MiniLM-L6-v2", input="still serving").data) == 1
    assert "Traceback" not in bridge.log_text()


# --------------------------------------------------------------------------- prompts


def test_input_type_selects_the_models_prompt(
    service_factory: type[ServiceProcess], bundled_model_path: str, tmp_path: Path
) -> None:
    """`input_type` (what OpenClaw's query/document become) picks the model's prompt of that name when
    the model defines one, and nothing when it does not; /v1/models lists the prompts."""
    model = tmp_path / "models" / "minilm-prompts"
    model.mkdir(parents=True)
    for item in Path(bundled_model_path).iterdir():
        if item.name != "config_sentence_transformers.json":
            (model / item.name).symlink_to(item)
    (model / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None}))
    svc = service_factory(env={"GPU_MODEL_DIRS": str(model.parent)}).start()
    with openai_bridge([svc.url], tmp_path) as bridge:
        c = client(bridge)

        def vector(input_type: str | None) -> list[float]:
            extra = {"input_type": input_type} if input_type else None
            return c.embeddings.create(model="minilm-prompts", input=["espresso machine"], extra_body=extra).data[0].embedding

        query, document, plain, unknown = vector("query"), vector("document"), vector(None), vector("clustering")
        listed = {m.id: m.model_extra for m in c.models.list()}
    def on_host(text: str) -> list[float]:
        return host_vectors(svc, [text], model="minilm-prompts")[0]

    assert close_to(query, on_host("query: espresso machine"))
    assert close_to(document, on_host("passage: espresso machine"))
    assert close_to(plain, on_host("espresso machine")) and close_to(unknown, plain)
    assert not close_to(query, plain) and not close_to(query, document)
    assert listed["minilm-prompts"]["prompts"] == ["document", "query"]
    own = httpx.post(f"{svc.url}/v1/embeddings", json={"input": "espresso machine", "model": "minilm-prompts",
                                                      "input_type": "query"}).json()["data"][0]["embedding"]
    assert close_to(own, query), "the service's own OpenAI endpoint maps input_type the same way"


# --------------------------------------------------------------------------- the process


def test_the_bridge_dies_with_the_process_that_started_it(service: ServiceProcess, tmp_path: Path) -> None:
    """--exit-with-stdin: a parent killed with SIGKILL (no chance to clean up) still takes the bridge
    with it, because the kernel closes the parent's end of the bridge's stdin."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'mcp_bridge', '--transport', 'http', '--port', '0',"
        f" '--exit-with-stdin', '--url', '{service.url}'], stdin=subprocess.PIPE)\n"
        "print('bridge pid', child.pid, flush=True)\n"
        "time.sleep(600)\n")], env=bridge_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert parent.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while not READY.search(seen):
        line = parent.stdout.readline()
        assert line and time.monotonic() < deadline, seen
        seen += line
    pid = int(re.search(r"bridge pid (\d+)", seen).group(1))  # type: ignore[union-attr]
    parent.kill()
    parent.wait()
    wait_until(lambda: not alive(pid), timeout=30, interval=0.1,
               message="the bridge outlived the process that started it")
    with openai_bridge([service.url], tmp_path) as bridge:
        pass
    assert bridge.process.returncode == 0 and "stdin closed: stopping" in bridge.log_text()
    assert "bridge stopped" in bridge.log_text(), "a clean stop: the pool was closed"
    misuse = subprocess.run([sys.executable, "-m", "mcp_bridge", "--exit-with-stdin"], env=bridge_env(),
                            capture_output=True, text=True, timeout=60)
    assert misuse.returncode == 2 and "--exit-with-stdin is for the http/sse transports" in misuse.stderr


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())  # a zombie is dead


def test_the_readme_openai_client_snippet(service: ServiceProcess, tmp_path: Path) -> None:
    """The README's `openai` example, run as written against a bridge (only its URL and token replaced)."""
    import contextlib
    import io

    from tests.repo.test_readme import blocks

    (code,) = [b for b in blocks("python") if "from openai import OpenAI" in b and "embeddings.create" in b]
    with openai_bridge([service.url], tmp_path) as bridge:
        code = code.replace("http://127.0.0.1:8787/v1", bridge.base_url).replace("<the bridge's token>", TOKEN)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, {})  # noqa: S102 - the README's own example
    count, width, tokens = printed.getvalue().split()
    assert (count, width) == ("2", "384") and int(tokens) > 2
