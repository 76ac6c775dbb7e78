"""`gpu-service`: serve the GPU service with uvicorn (no module paths to remember)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu-service",
        description="Serve embeddings and BERTScore over HTTP on this machine's GPU (or CPU). "
        "Models and limits are set with environment variables; see the README.",
    )
    parser.add_argument("--host", default=os.environ.get("GPU_SERVICE_HOST", "127.0.0.1"),
                        help="address to bind (default 127.0.0.1; use 0.0.0.0 to serve the LAN, with API_KEY set)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GPU_SERVICE_PORT", "8765")))
    parser.add_argument("--ssl-keyfile", default=None, help="serve HTTPS with this private key")
    parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"),
                        choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (off by default: it costs event-loop time under load)")
    parser.add_argument("--timeout-keep-alive", type=int, default=65,
                        help="seconds to keep idle connections (ADR D7: longer than the bridge's timeout)")
    return parser.parse_args(argv)


def graceful_shutdown_s(drain_timeout_s: float) -> int:
    """How long uvicorn waits for open requests after SIGTERM: the service's drain plus 5 s to answer.
    A supervisor's grace period (systemd TimeoutStopSec, Kubernetes terminationGracePeriodSeconds)
    must be longer."""
    return int(drain_timeout_s) + 5


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Weights come from the bundled package, GPU_MODEL_DIRS or the local cache unless the
    # operator opts into downloads; never reach for the network by surprise.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import uvicorn

    from gpu_service.app import create_app, settings_from_env

    try:
        settings = settings_from_env()
        if settings.torch_device:  # a TORCH_DEVICE this machine lacks: one line, not a start-up traceback
            from gpu_service.runtime.device import select_device

            select_device(settings.torch_device)
    except ValueError as exc:
        print(f"gpu-service: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        logging.getLogger("gpu_service.cli").warning(
            "serving on %s without API_KEY: anyone who can reach this port can use the GPU", args.host
        )
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_keep_alive=args.timeout_keep_alive,
        ssl_keyfile=args.ssl_keyfile,
        ssl_certfile=args.ssl_certfile,
        timeout_graceful_shutdown=graceful_shutdown_s(settings.drain_timeout_s),
    )


if __name__ == "__main__":
    main()
