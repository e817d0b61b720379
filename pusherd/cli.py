"""The ``pusherd`` command: read the config, start the server, stop on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from multiprocessing.connection import Connection

from pusherd import __version__
from pusherd.config import Config, load_config
from pusherd.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """The ``pusherd`` command's arguments (``--help`` lists them)."""
    parser = argparse.ArgumentParser(
        prog="pusherd",
        description="A self-hosted Pusher Channels (protocol 7) server: WebSocket and HTTP API "
                    "on one port.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config file "
                        "(see config.example.toml)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8080; 0 picks one)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes sharing the port, as nodes of one cluster over the "
                             "configured Redis (default [server] workers, 1)")
    parser.add_argument("--version", action="version", version=f"pusherd {__version__}")
    return parser


def _banner(config: Config, port: int) -> str:
    host = config.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    lines = [f"pusherd {__version__} listening on http://{host}:{port}"]
    for app in config.apps:
        lines.append(f"  app id={app.id} key={app.key}" + (
            " client-events=on" if app.enable_client_events else ""))
    if config.dev_app:
        app = config.apps[0]
        lines += [
            "",
            "No app configured: serving the development app (never use it in production):",
            f"  app id: {app.id}   key: {app.key}   secret: {app.secret}",
            "",
            "pusher-js / Laravel Echo:",
            f"  new Pusher('{app.key}', {{ wsHost: '{shown}', wsPort: {port}, forceTLS: false,",
            "    enabledTransports: ['ws', 'wss'], cluster: '' })",
            "Laravel .env (broadcaster reverb or pusher):",
            f"  REVERB_APP_ID={app.id}  REVERB_APP_KEY={app.key}  REVERB_APP_SECRET={app.secret}",
            f"  REVERB_HOST={shown}  REVERB_PORT={port}  REVERB_SCHEME=http",
        ]
    return "\n".join(lines)


async def _serve(config: Config, ready: Connection | None = None) -> int:
    """Run one pusherd until SIGTERM/SIGINT. A worker (`ready` given) reports on that
    pipe instead of printing the listening line, which its parent prints once."""
    from pusherd.server.server import Server

    server = Server(config)
    try:
        await server.start()
    except ConfigError as exc:  # found at start: e.g. a webhook journal in use
        print(f"pusherd: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        message = (f"cannot listen on {config.server.host}:{config.server.port}: "
                   f"{exc.strerror or exc}")
        print(f"pusherd: {message}", file=sys.stderr)
        if ready is not None:
            ready.send(message)
        return 1
    if ready is not None:
        ready.send("ready")
        ready.close()
    else:
        # The first line is the machine-readable one tests and scripts wait for.
        print(f"pusherd listening on http://{config.server.host}:{server.port}", flush=True)
        print(_banner(config, server.port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("pusherd.server").info("shutting down: draining %d connection(s)",
                                             len(server.state.connections))
    await server.shutdown()
    if ready is None:
        print("pusherd stopped", flush=True)
    return 0


def _run(config: Config, ready: Connection | None = None) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(_serve(config, ready))
    return uvloop.run(_serve(config, ready))


def _run_worker(config: Config, index: int, ready: Connection) -> int:
    logging.getLogger("pusherd.workers").debug("worker %d starting", index)
    return _run(config, ready)


def _serve_workers(config: Config, workers: int) -> int:
    from pusherd.server.workers import run_workers

    def listening(port: int) -> None:
        print(f"pusherd listening on http://{config.server.host}:{port}", flush=True)
        print(_banner(config, port) + f"\n  {workers} worker processes", flush=True)

    status = run_workers(config, workers, _run_worker, listening)
    print("pusherd stopped", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the ``pusherd`` command with `argv` (default: ``sys.argv``); return the exit
    status: 0 after a clean stop, 1 when the port cannot be bound, 2 for a bad config
    (``--workers`` above 1 without Redis included).
    """
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, os.environ, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"pusherd: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for warning in config.warnings:
        logging.getLogger("pusherd.config").warning("%s", warning)
    # The WebSocket layer logs each frame at DEBUG and each close at INFO: only a debug
    # run wants either (see pusherd.server.websocket).
    debug = config.server.log_level.lower() == "debug"
    logging.getLogger("pusherd.ws.frames").setLevel(logging.DEBUG if debug else logging.WARNING)
    workers = args.workers if args.workers is not None else config.server.workers
    if workers != config.server.workers:
        config = replace(config, server=replace(config.server, workers=workers))
    try:
        from pusherd.server.workers import check_workers
        check_workers(config, workers)
    except ConfigError as exc:
        print(f"pusherd: {exc}", file=sys.stderr)
        return 2
    if workers > 1:
        return _serve_workers(config, workers)
    return _run(config)
