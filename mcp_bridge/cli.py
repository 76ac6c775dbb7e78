"""`gpu-bridge`: run the MCP server (stdio by default), or `--check` the configured hosts."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpu_protocol.status import InfoResponse, StatusResponse
from gpu_protocol.versions import RELEASES
from mcp_bridge import __version__
from mcp_bridge.config import BridgeConfig, ConfigError, load_config

if TYPE_CHECKING:
    from mcp_bridge.bridge import Bridge

log = logging.getLogger("mcp_bridge")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gpu-bridge",
        description="MCP server that gives an agent GPU tools (embeddings, BERTScore, similarity) "
        "over a pool of GPU hosts. With no hosts configured it starts a local GPU service.",
    )
    p.add_argument("--config", metavar="FILE", help="plugin config JSON (or a whole OpenClaw config file)")
    p.add_argument("--url", action="append", metavar="URL", help="a GPU host URL (repeat for a pool); overrides hosts")
    p.add_argument("--load-balancing", choices=["round-robin", "least-busy"])
    p.add_argument("--timeout", type=float, help="deadline of one tool call in seconds")
    p.add_argument("--transport", choices=["stdio", "http", "streamable-http", "sse"],
                   default=os.environ.get("GPU_BRIDGE_TRANSPORT", "stdio"))
    p.add_argument("--host", default=os.environ.get("GPU_BRIDGE_HOST", "127.0.0.1"),
                   help="address for the http/sse transports (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GPU_BRIDGE_PORT", "8787")),
                   help="port for the http/sse transports (0: a free one, printed when ready)")
    p.add_argument("--auth-token", default=None,
                   help="bearer token required by the http/sse transports (or GPU_BRIDGE_AUTH_TOKEN)")
    p.add_argument("--log-level", default=os.environ.get("GPU_BRIDGE_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--check", action="store_true", help="probe every host, print a table, exit 1 if none is usable")
    p.add_argument("--exit-with-stdin", action="store_true",
                   help="http/sse: stop when stdin closes (for a parent process that starts the bridge: it "
                   "dies with its parent however the parent ends)")
    p.add_argument("--version", action="version", version=f"gpu-bridge {__version__}")
    return p.parse_args(argv)


def _banner(url: str, token: str | None) -> str:
    auth = f' --header "Authorization: Bearer {token}"' if token else ""
    snippet: dict[str, object] = {"type": "http", "url": url}
    if token:
        snippet["headers"] = {"Authorization": f"Bearer {token}"}
    base = url.rsplit("/", 1)[0]
    return "\n".join([
        "",
        f"GPU bridge (MCP, streamable HTTP) is ready at {url}",
        f"OpenAI-compatible API at {base}/v1 (POST /v1/embeddings, /v1/rerank, /v1/audio/transcriptions, "
        "/v1/audio/speech; GET /v1/models, /v1/audio/voices; same token)",
        "",
        "List the tools with the MCP Inspector CLI:",
        f"  npx @modelcontextprotocol/inspector@2.12.0 --cli {url} --transport http{auth} --method tools/list",
        "Call one:",
        f"  npx @modelcontextprotocol/inspector@2.12.0 --cli {url} --transport http{auth} "
        "--method tools/call --tool-name gpu_embed --tool-arg 'texts=[\"hello\",\"world\"]'",
        "",
        "mcpServers entry for an MCP client (Claude Desktop, Cursor, ...):",
        json.dumps({"mcpServers": {"gpu-bridge": snippet}}, indent=2),
        "",
        "Press Ctrl-C to stop.",
        "",
    ])


async def _serve(config: BridgeConfig, args: argparse.Namespace) -> None:
    from mcp_bridge.access.gate import Access
    from mcp_bridge.bridge import Bridge
    from mcp_bridge.mcp.server import build_server

    token = args.auth_token or os.environ.get("GPU_BRIDGE_AUTH_TOKEN") or None
    # The clients' tokens are read before anything starts: an unset tokenEnv is a config error (exit 2).
    access = None if args.transport == "stdio" else Access.from_config(config, token, os.environ)
    async with Bridge(config) as bridge:
        server = build_server(bridge, access)
        if args.transport == "stdio":
            await server.run_stdio_async()
            return
        import uvicorn

        from mcp_bridge.http_api.app import http_app

        transport = "sse" if args.transport == "sse" else "http"
        if args.host not in ("127.0.0.1", "localhost", "::1") and access is None:
            log.warning("serving MCP on %s without --auth-token: anyone who can reach it can use your GPUs", args.host)
        from mcp_bridge.http_api.metrics import metrics_app
        from mcp_bridge.http_api.openai import openai_app

        openai = openai_app(bridge.gpu, bridge.config, unavailable=bridge.not_configured, access=access)
        metrics = metrics_app(lambda: bridge.pool.snapshot() if bridge.pool else None,
                              lambda: access.snapshot() if access else [])
        app = http_app(server, transport, args.host, access, openai, metrics)
        uv = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           timeout_graceful_shutdown=5))

        async def announce() -> None:
            while not uv.started:
                await asyncio.sleep(0.05)
            port = uv.servers[0].sockets[0].getsockname()[1] if uv.servers else args.port  # --port 0
            path = "/sse" if transport == "sse" else "/mcp"
            print(_banner(f"http://{args.host}:{port}{path}", token), flush=True)

        if args.exit_with_stdin:
            exit_when_stdin_closes(lambda: setattr(uv, "should_exit", True))
        announcer = asyncio.create_task(announce())
        try:
            await uv.serve()
        finally:
            announcer.cancel()


def exit_when_stdin_closes(stop: Callable[[], None]) -> None:
    """Call `stop` when stdin reaches end of file: the parent that holds its other end has closed it
    or died (the kernel closes a dead process's pipes, whatever killed it)."""

    def watch() -> None:
        while os.read(sys.stdin.fileno(), 65536):
            pass
        log.info("stdin closed: stopping")
        stop()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def protocol_of(info: InfoResponse | None) -> str:
    """A host's wire protocol version for --check, with the release that brought it in (docs/compatibility.md)."""
    if info is None:
        return "-"
    version = info.protocol_version
    return f"{version} ({RELEASES[version]})" if version in RELEASES else str(version)


async def _check(config: BridgeConfig, source: str) -> int:
    from mcp_bridge.bridge import Bridge
    from mcp_bridge.pool.views import models_in_words

    print(f"configuration: {source}")
    async with Bridge(config) as bridge:
        if bridge.not_configured:
            print(bridge.not_configured)
            return 1
        started = time.perf_counter()
        health = await bridge.gpu.health()
        info = {r.name: r for r in await bridge.gpu.info()}
        print(f"strategy: {bridge.config.loadBalancing}; probed in {time.perf_counter() - started:.2f}s\n")
        rows = [("HOST", "URL", "HEALTH", "PROTOCOL", "DEVICE", "MODELS", "LATENCY", "PROBLEM")]
        usable = 0
        degraded: list[tuple[str, list[str]]] = []
        for h in health:
            i = info[h.name]
            details = i.info
            info_error = i.error if i.described else None  # openai/tei hosts have no /info: not a failure
            problem = h.error or info_error or "; ".join(h.problems)
            ok = h.ok and not info_error
            usable += ok
            if ok and h.problems:
                degraded.append((h.name, h.problems))
            models = ",".join(m.name for m in details.models) if details and details.models else "-"
            device = (f"{details.device} {details.device_name}" if details else h.device or "-").strip()
            latency = f"{h.latency_ms} ms" if h.latency_ms is not None else "-"
            health_word = ("degraded" if h.problems else "ok") if ok else "FAIL"
            rows.append((h.name, h.url, health_word, protocol_of(details), device, models, latency, problem[:80]))
        widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
        for r in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
        # A degraded host serves the models it has; its reasons in full (the table cuts them).
        for name, problems in degraded:
            print(f"\n{name} is degraded (serves the models it has):")
            for problem in problems:
                print(f"  - {problem}")
        # What each host serves per task: a call naming a model goes only to hosts that serve it.
        print("\nmodels per host (calls naming a model go to hosts that have it loaded, then to those allowed to load it):")
        for name, row in info.items():
            print(f"  {name}: {models_in_words(row.models)}")
        # openai hosts: which spelling of their paths answered (a base URL with or without /v1).
        for h in health:
            if h.paths:
                print(f"\n{h.name} is called at {h.paths}")
        await _print_sharing(bridge)
        print(f"\n{usable}/{len(health)} host(s) usable" + (f", {len(degraded)} degraded" if degraded else ""))
        return 0 if usable else 1


async def _print_sharing(bridge: Bridge) -> None:
    """Each host's queue per class (from its /status), and where a running bridge's fair share is: this check
    is a fresh process that has served nothing, so its own counters would always be empty (docs/sharing.md)."""
    from mcp_bridge.pool.views import queued_in_words

    status = await bridge.gpu.status()
    print("\nqueues per class (each host's /status; a host older than the classes gives its total only):")
    for host in status.hosts:
        service = host.service
        queued = queued_in_words(service.queue_depth, service.queued_by_class) if isinstance(
            service, StatusResponse) else "unreachable"
        print(f"  {host.name}: {queued}")
    print("fair share at a running bridge (shards waiting per class, items and refusals per tenant, quota left): "
          "its gpu_status tool, and on an HTTP bridge GET /metrics with its token (docs/sharing.md); "
          "this check serves no calls, so it has none of its own")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.exit_with_stdin and args.transport == "stdio":
        print("gpu-bridge: --exit-with-stdin is for the http/sse transports (stdio reads MCP from stdin)",
              file=sys.stderr)
        raise SystemExit(2)
    # Logs go to stderr: under stdio, stdout is the MCP channel and one stray line breaks it.
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config, source = load_config(args.config, urls=args.url, load_balancing=args.load_balancing,
                                     timeout=args.timeout)
    except ConfigError as exc:
        print(f"gpu-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("configuration from %s", source)
    try:
        if args.check:
            raise SystemExit(asyncio.run(_check(config, source)))
        asyncio.run(_serve(config, args))
    except ConfigError as exc:
        print(f"gpu-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
