"""
The ``callcov-emulator`` console script: serve the emulator until SIGINT or SIGTERM.

Example::

    callcov-emulator --port 8089 --api-key sk_test_a --api-key sk_test_b \\
        --processing-seconds 1-5 --fault 503=0.1 --fault latency=0.05 --db /tmp/callcov.sqlite

It prints its base URL and then the line ``callcov-emulator ready: http://127.0.0.1:PORT/api/v1`` once it
accepts requests. Keys may also come from ``CALLCOV_EMULATOR_API_KEYS`` (comma-separated), which keeps
them off the command line; they are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError

from callcov_provider.testing.config import (
    DEFAULT_API_KEY,
    PLANS,
    EmulatorConfig,
    build_config,
    parse_seconds_range,
)
from callcov_provider.testing.server import CONFIG_ENV, KEYS_ENV, READY_PREFIX, bind_socket, root_url_for


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="callcov-emulator",
        description="Serve a local emulator of the CallCov API (both generations) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port; 0 picks a free one (default: 8089)")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted key, repeatable; the n-th is account acct_n (default: ${KEYS_ENV} or "
        f"{DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--processing-seconds",
        metavar="S|MIN-MAX",
        help="processing time of each analysis, fixed or a range spread per analysis (default: 2)",
    )
    parser.add_argument("--failure-rate", type=float, help="share of analyses that fail, 0 to 1 (default: 0)")
    parser.add_argument(
        "--rate-limit", type=int, metavar="REQ_PER_MIN", help="requests per minute per account"
    )
    parser.add_argument(
        "--submit-rate-limit", type=int, metavar="N", help="submissions per minute per account"
    )
    parser.add_argument(
        "--quota-mode",
        choices=["friendly", "documented"],
        help="friendly (default): 429s carry Retry-After; documented: exactly as the API documentation "
        "shows (no Retry-After, 100 requests/min and 20 submissions/min unless a plan or limit is given)",
    )
    parser.add_argument(
        "--plan",
        choices=list(PLANS),
        help="a documented plan: submissions/min and concurrent processing (free 5/1, starter 30/5, "
        "business 150/25, enterprise unlimited)",
    )
    parser.add_argument(
        "--concurrent-processing",
        type=int,
        metavar="N",
        help="analyses per account processed at once; later ones wait in 'processing' (default: the plan's)",
    )
    parser.add_argument(
        "--reset-format",
        choices=["epoch", "epoch_ms", "delta"],
        help="how X-RateLimit-Reset is written (default: epoch seconds, as documented)",
    )
    parser.add_argument(
        "--clock-offset",
        type=float,
        metavar="SECONDS",
        help="run the server's clock this many seconds ahead (negative: behind) of the wall clock",
    )
    parser.add_argument(
        "--fault",
        action="append",
        dest="faults",
        metavar="NAME=VALUE",
        help="inject faults, repeatable: 500|502|503|504=P, latency=S or MIN-MAX, latency_rate=P, "
        "drop=P, lose=P, lose_mode=503|drop, burst429=N, retry_after=S, drop_next=N, lose_next=N, "
        "next_errors=503,502",
    )
    parser.add_argument("--db", metavar="FILE", help="keep analyses and idempotency keys in this SQLite file")
    parser.add_argument(
        "--seed", type=int, help="seed of the fault RNG, analysis ids and failures (default: 0)"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        dest="allow_hosts",
        metavar="HOST",
        help="also fetch audio_url from / deliver webhooks to HOST (repeatable; default: loopback only)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (no keys are ever logged)"
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> EmulatorConfig:
    """
    Build the configuration: the parent's ``CALLCOV_EMULATOR_CONFIG`` (JSON) if set, then the flags.

    :raises ValueError: for an invalid flag value.
    """
    env = os.environ if environ is None else environ
    base = EmulatorConfig.model_validate_json(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None
    api_keys = args.api_keys
    if api_keys is None and env.get(KEYS_ENV):
        api_keys = [key.strip() for key in env[KEYS_ENV].split(",") if key.strip()]
    processing = parse_seconds_range(args.processing_seconds) if args.processing_seconds else None
    allow_hosts = None
    if args.allow_hosts:
        allow_hosts = [*(base.allow_hosts if base else EmulatorConfig().allow_hosts), *args.allow_hosts]
    return build_config(
        api_keys=api_keys,
        processing_seconds=processing,
        failure_rate=args.failure_rate,
        rate_limit=args.rate_limit,
        submit_rate_limit=args.submit_rate_limit,
        quota_mode=args.quota_mode,
        plan=args.plan,
        concurrent_processing=args.concurrent_processing,
        reset_format=args.reset_format,
        clock_offset=args.clock_offset,
        faults=args.faults,
        allow_hosts=allow_hosts,
        db=args.db,
        seed=args.seed,
        base=base,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the emulator until SIGINT or SIGTERM; return the exit status (0 after a clean stop).

    :param argv: Arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, ValidationError) as err:
        parser.error(str(err))
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as err:
        print(f"callcov-emulator: cannot bind {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    port = int(sock.getsockname()[1])
    root_url = root_url_for(args.host, port)
    return asyncio.run(_serve(config, sock, root_url, args.log_level, args.access_log))


async def _serve(
    config: EmulatorConfig, sock: object, root_url: str, log_level: str, access_log: bool
) -> int:
    import socket

    import uvicorn

    from callcov_provider.testing.app import create_app

    assert isinstance(sock, socket.socket)
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=access_log,
            lifespan="on",
            date_header=False,  # the app writes Date in its own (possibly offset) clock
        )
    )
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        # uvicorn installs its own handlers while serving and re-raises the signal afterwards: landing
        # here then lets the process end normally, with status 0.
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, remember)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        accounts = ", ".join(app.emulator.keyring.accounts)
        storage = config.db_path or "memory"
        print(
            f"CallCov emulator at {root_url} (API {root_url}/api/v1, control {root_url}/_emulator)",
            flush=True,
        )
        print(
            f"accounts: {accounts}; storage: {storage}; processing: "
            f"{config.processing.min_seconds:g}-{config.processing.max_seconds:g} s",
            flush=True,
        )
        print(f"{READY_PREFIX}{root_url}/api/v1", flush=True)
    try:
        await task
    finally:
        sock.close()
    if not server.started:
        return 1
    print("callcov-emulator stopped", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m callcov_provider.testing.cli
    sys.exit(main())
