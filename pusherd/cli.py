"""The ``pusherd`` command: read the config, start the server, stop (a paced drain) on
SIGTERM, SIGINT or SIGHUP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from pusherd import __version__
from pusherd.config import Config, load_config
from pusherd.environment import format_environment_help
from pusherd.errors import ConfigError

if TYPE_CHECKING:
    from pusherd.server.logs import WorkerTag

log = logging.getLogger("pusherd.server")


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that start the paced drain (a second one ends it at once): SIGTERM,
    SIGINT, and SIGHUP unless this process inherited it ignored. An ignored SIGHUP is the
    `nohup` convention, and what a supervising script (``scripts/run.sh``) sets so that a
    closing terminal reaches the script, which then stops its servers in order: the
    hangup is not meant for this process, so it stays ignored. Read it before installing
    any handler."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return (signal.SIGTERM, signal.SIGINT)
    return (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

HELP = ("pusherd --help (options, environment variables); operations guide: "
        "docs/operations.md in the pusherd source repository")
RULE = "-" * 72


def url_host(host: str) -> str:
    """`host` as the host part of a URL: IPv6 addresses in brackets ("" is every IPv4
    interface, as it binds)."""
    host = host or "0.0.0.0"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def local_host(host: str) -> str:
    """The URL host a client on this machine reaches `host` at (a wildcard address is
    reached at the loopback address of its family)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return url_host(host)


def build_parser() -> argparse.ArgumentParser:
    """The ``pusherd`` command's arguments (``--help`` lists them)."""
    parser = argparse.ArgumentParser(
        prog="pusherd",
        description="A self-hosted Pusher Channels (protocol 7) server: WebSocket and HTTP API "
                    "on one port.",
        epilog=format_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config file "
                        "(see config.example.toml)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8080; 0 picks one)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="log level (default: [server] log_level, info)")
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="log lines as text or one JSON object per line "
                             "(default: [server] log_format, text)")
    parser.add_argument("--debug", action="store_true",
                        help="log every frame in and out (WebSocket and HTTP fallback) with "
                             "its socket id "
                             "(auth signatures redacted); implies --log-level debug")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes sharing the port, as nodes of one cluster over the "
                             "configured Redis (default [server] workers, 1)")
    parser.add_argument("--version", action="version", version=f"pusherd {__version__}")
    return parser


def _banner(config: Config, port: int, metrics_port: int | None, open_file_limit: int,
            max_connections: int, log_format: str, debug: bool, workers: int = 1,
            node_id: str = "") -> str:
    host = config.server.host
    shown = local_host(host)
    scheme = "https" if config.tls.enabled else "http"
    prefix = config.server.path_prefix
    # The first line is the machine-readable one tests and scripts wait for; the address
    # is said there only.
    lines = [f"pusherd listening on {scheme}://{url_host(host)}:{port}", RULE,
             f"pusherd {__version__}: WebSocket {'wss' if config.tls.enabled else 'ws'}://"
             f"...{prefix}/app/{{key}}, HTTP API {prefix}/apps/{{id}}/..."]
    if config.public_url:
        lines.append(f"  clients reach it at {config.public_url} (REVERB_HOST/PORT/SCHEME)")
    for app in config.apps:
        lines.append(f"  app id={app.id} key={app.key}" + (
            " client-events=on" if app.enable_client_events else "") + (
            f" max-connections={app.max_connections}" if app.max_connections else "") + (
            f" webhooks={len(app.webhooks)}" if app.webhooks else ""))
    health = f"  health: {scheme}://{shown}:{port}/up (liveness), /ready (readiness)"
    if config.metrics.enabled:
        metrics_host = config.metrics.host or shown
        if metrics_host in ("0.0.0.0", "::"):
            metrics_host = "127.0.0.1"
        health += (f"; metrics: http://{metrics_host}:{metrics_port}/metrics" if metrics_port
                   else "; metrics: /metrics")
    lines.append(health)
    redis = config.redis
    if redis.enabled:
        nodes = f"{workers} nodes (one per worker)" if workers > 1 else f"node {node_id}"
        lines.append(f"  cluster: {nodes} over Redis {redis.redacted_url()}, key prefix "
                     f"{redis.prefix!r}, bus {redis.bus}")
    if config.console.enabled:
        lines.append(f"  debug console: {scheme}://{shown}:{port}/console?token=<[console] token>")
    if workers > 1:
        lines.append(f"  {workers} worker processes sharing the port (metrics, logs and the "
                     "console are per worker)")
    else:
        lines.append(f"  at most {max_connections} connections (open-file limit "
                     f"{open_file_limit})")
    lines.append(f"  logs: {log_format} on stderr{', every frame (--debug)' if debug else ''}")
    lines.append("  stop: SIGTERM or Ctrl-C drains (clients told to reconnect, paced); "
                 "a second one stops at once")
    lines.append(f"  help: {HELP}")
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
    lines.append(RULE)
    return "\n".join(lines)


def _warn_unavailable(config: Config) -> None:
    """A configured feature this build cannot deliver is said at start, never ignored."""
    if any(app.webhooks for app in config.apps) and (
            importlib.util.find_spec("pusherd.webhooks") is None):
        hooks = sum(len(app.webhooks) for app in config.apps)
        log.warning("%d webhook(s) configured ([[apps.webhooks]]) but not delivered by this "
                    "build of pusherd (no webhook sender)", hooks,
                    extra={"event": "feature_unavailable", "feature": "webhooks"})


def _announce(banner: str) -> None:
    """Say the banner: in text, on stdout between its two rules; in JSON, as one log
    record on stderr (``event`` ``listening``, ``url``, the other lines in ``banner``),
    so that every line of a JSON run is JSON."""
    if _LOG_FORMAT != "json":
        print(banner, flush=True)
        return
    first, *rest = banner.split("\n")
    logging.getLogger("pusherd.banner").info("%s", first, extra={
        "event": "listening", "url": first.rsplit(" ", 1)[-1], "version": __version__,
        "banner": [line.strip() for line in rest if line.strip() and line != RULE]})


def _stopped() -> None:
    if _LOG_FORMAT == "json":
        logging.getLogger("pusherd.banner").info("pusherd stopped",
                                                  extra={"event": "stopped"})
    else:
        print("pusherd stopped", flush=True)


# How this run logs (set by main() before any worker is forked, so workers inherit it).
_LOG_FORMAT = "text"
_DEBUG = False


async def _serve(config: Config, ready: Connection | None = None,
                 tag: WorkerTag | None = None) -> int:
    """Run one pusherd until SIGTERM/SIGINT. A worker (`ready` given) reports on that
    pipe instead of printing the banner, which its parent prints once; its log lines
    carry `tag` (worker index, pid, node id)."""
    from pusherd.server.server import Server

    server = Server(config, debug=_DEBUG)
    node_id = str(getattr(server.adapter, "node_id", ""))
    if tag is not None:
        tag.node = node_id
    stop = asyncio.Event()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if sig == signal.SIGHUP:
            # Not a reload (nginx's meaning): nothing is re-read. A closing terminal sends
            # it too; either way the clients are moved off in a paced drain, not cut.
            log.warning("SIGHUP: stopping with a drain, as for SIGTERM (pusherd does not "
                        "reload its configuration: start it again to apply changes)",
                        extra={"event": "sighup"})
        if signals == 1:
            stop.set()
        else:
            log.warning("second stop signal: closing at once", extra={"event": "drain_forced"})
            server.force_stop()

    # Installed before the port is bound: from the moment the port answers (a supervisor
    # or a test may see it listening and stop it at once), a stop signal is a clean stop,
    # never the default action that kills the process mid-start.
    loop = asyncio.get_running_loop()
    for sig in stop_signals():
        loop.add_signal_handler(sig, on_signal, sig)
    starting = asyncio.create_task(server.start(), name="pusherd-start")
    stop_waiter = asyncio.create_task(stop.wait(), name="pusherd-stop-during-start")
    await asyncio.wait((starting, stop_waiter), return_when=asyncio.FIRST_COMPLETED)
    stop_waiter.cancel()
    if not starting.done():
        # Stopped while starting (e.g. waiting up to lease_ttl for Redis): no client was
        # admitted yet (until started, new clients get 503), so there is nothing to
        # drain; Server.start closes what it had opened when it is cancelled.
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConfigError, OSError):
            await starting
        log.info("stop signal during start-up: stopped before serving",
                 extra={"event": "shutdown"})
        if ready is None:
            _stopped()
        return 0
    try:
        starting.result()
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
    if config.redis.enabled:
        # Success is said too, not only failures: the log shows this node is clustered.
        log.info("cluster node %s: Redis at %s, key prefix %r, bus %s, lease %g s; %s",
                 node_id, config.redis.redacted_url(), config.redis.prefix,
                 config.redis.bus, config.redis.lease_ttl,
                 "connected" if server.adapter.ready else "not connected yet (retrying)",
                 extra={"event": "cluster_node", "node": node_id})
    if ready is not None:
        ready.send("ready")
        ready.close()
    else:
        # The banner goes to stdout between two rules, log lines to stderr: never mixed
        # (in JSON, the banner is one log record).
        _announce(_banner(config, server.port, server.metrics_port,
                          server.state.open_file_limit, server.state.max_open_connections,
                          _LOG_FORMAT, _DEBUG, node_id=node_id))
        _warn_unavailable(config)
    await stop.wait()
    if tag is not None and os.getppid() != tag.parent_pid:
        log.warning("the --workers parent process is gone: this worker stops too",
                    extra={"event": "parent_gone"})
    log.info("shutting down: draining %d connection(s)", len(server.state.connections),
             extra={"event": "shutdown"})
    await server.drain()
    if ready is None:
        _stopped()
    return 0


def _run(config: Config, ready: Connection | None = None,
         tag: WorkerTag | None = None) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(_serve(config, ready, tag))
    return uvloop.run(_serve(config, ready, tag))


def _run_worker(config: Config, index: int, ready: Connection) -> int:
    from pusherd.server.logs import tag_worker

    tag = tag_worker(index, os.getpid())
    logging.getLogger("pusherd.workers").debug("worker %d starting", index)
    return _run(config, ready, tag)


def _serve_workers(config: Config, workers: int) -> int:
    from pusherd.server.workers import run_workers

    def listening(shared: Config) -> None:
        # One banner for the workers (each is a whole pusherd with its own counters).
        metrics_port = shared.metrics.port if shared.metrics.port > 0 else None
        _announce(_banner(shared, shared.server.port, metrics_port, 0, 0, _LOG_FORMAT, _DEBUG,
                          workers))
        _warn_unavailable(config)

    status = run_workers(config, workers, _run_worker, listening)
    _stopped()
    return status


class _StopBeforeServing(Exception):
    """A stop signal arrived before the event loop's own handlers were installed."""


def _stop_before_serving(signum: int, frame: object) -> None:
    raise _StopBeforeServing(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the ``pusherd`` command with `argv` (default: ``sys.argv``); return the exit
    status: 0 after a clean stop, 1 when the port cannot be bound, 2 for a bad config
    (``--workers`` above 1 without Redis included, and a Redis that refuses the settings:
    a wrong password or database, a certificate that does not verify).
    """
    args = build_parser().parse_args(argv)
    # Until the event loop installs its own handlers (in _serve), a stop signal ends the
    # start cleanly wherever it is: reading the config, or the start-up Redis check (up to
    # its timeout against a Redis that accepts connections and never answers). An
    # inherited ignored SIGHUP stays ignored (see stop_signals).
    signals = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, _stop_before_serving) for sig in signals}
    try:
        return _main(args)
    except _StopBeforeServing:
        print("pusherd: stop signal during start-up: stopped before serving", file=sys.stderr)
        print("pusherd stopped", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, os.environ, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"pusherd: {exc}", file=sys.stderr)
        return 2
    from pusherd.server.logs import configure_logging

    log_format = args.log_format or config.server.log_format
    level = args.log_level or config.server.log_level
    # Level debug is the frame log too, as --debug is level debug.
    debug = args.debug or level.lower() == "debug"
    configure_logging(level, log_format, debug)
    for warning in config.warnings:
        logging.getLogger("pusherd.config").warning("%s", warning)
    for notice in config.notices:
        logging.getLogger("pusherd.config").info("%s", notice)
    global _LOG_FORMAT, _DEBUG
    _LOG_FORMAT, _DEBUG = log_format, debug
    workers = args.workers if args.workers is not None else config.server.workers
    if workers != config.server.workers:
        config = replace(config, server=replace(config.server, workers=workers))
    try:
        from pusherd.server.workers import check_workers
        check_workers(config, workers)
        if config.redis.enabled:
            # A wrong password or database never heals: refuse now, before any worker.
            from pusherd.server.preflight import check_redis
            check_redis(config.redis, config.redis_source)
    except ConfigError as exc:
        print(f"pusherd: {exc}", file=sys.stderr)
        return 2
    if workers > 1:
        return _serve_workers(config, workers)
    return _run(config)
