"""`python -m attendance_api [--demo] [--host H] [--port P] [--database-url URL]
[--with-pusherd]`: migrate, optionally seed the demo, serve with uvicorn."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from .app import create_app
from .demo import seed_demo
from .frontend_files import FRONTEND_DIST
from .runtime import Config, Runtime

log = logging.getLogger("attendance_api")


def start_pusherd(host: str, api_port: int) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    """Run `python -m pusherd` (a separate process, never imported) with fresh credentials,
    posting its presence webhooks to this service on `api_port` (who is online)."""
    app_id, key, secret = (
        str(secrets.randbelow(900000) + 100000),
        secrets.token_hex(10),
        secrets.token_hex(20),
    )
    folder = Path(tempfile.mkdtemp(prefix="attendance-pusherd-"))
    config = folder / "pusherd.toml"
    api_host = f"[{host}]" if ":" in host else host
    config.write_text(
        f'[server]\nhost = "{host}"\nport = 0\nactivity_timeout = 30\n\n[[apps]]\n'
        f'id = "{app_id}"\nkey = "{key}"\nsecret = "{secret}"\nenable_client_events = false\n'
        f'allowed_origins = ["*"]\n\n[[apps.webhooks]]\n'
        f'url = "http://{api_host}:{api_port}/webhooks/pusher"\n'
        f'event_types = ["member_added", "member_removed"]\n\n'
        f'[webhooks]\njournal = "{folder / "webhooks.journal"}"\n'
    )
    config.chmod(0o600)
    process = subprocess.Popen(
        [sys.executable, "-m", "pusherd", "--config", str(config), "--host", host, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write("  [pusherd] " + line)
        if "pusherd listening on http://" in line:
            port = line.rsplit(":", 1)[1].strip().rstrip("/")
            env = {
                "PUSHER_APP_ID": app_id,
                "PUSHER_APP_KEY": key,
                "PUSHER_APP_SECRET": secret,
                "PUSHER_HOST": host,
                "PUSHER_PORT": port,
                "PUSHER_SCHEME": "http",
            }
            return process, env, str(folder)
    raise SystemExit("pusherd did not start")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m attendance_api")
    parser.add_argument("--host", default=os.environ.get("ATTENDANCE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ATTENDANCE_PORT", "8000")))
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default sqlite:///attendance.db, or ATTENDANCE_DATABASE_URL)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="seed a small demo and print its credentials"
    )
    parser.add_argument(
        "--with-pusherd",
        action="store_true",
        help="also start pusherd (python -m pusherd) with fresh credentials",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    pusherd = None
    pusherd_dir: str | None = None
    env = dict(os.environ)
    if args.with_pusherd:
        pusherd, pusher_env, pusherd_dir = start_pusherd(args.host, args.port)
        env.update(pusher_env)
    try:
        serve(args, env)
    finally:
        stop_pusherd(pusherd, pusherd_dir)
    log.info("attendance_api stopped")


def serve(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Migrate, seed, bind, print the banner, serve until SIGINT/SIGTERM."""
    overrides = {"database_url": args.database_url} if args.database_url else {}
    config = Config.from_env(env, **overrides)
    runtime = Runtime(config)
    runtime.prepare(demo=args.demo)
    credentials: dict[str, str] = {}
    if args.demo:
        with runtime.unit(write=True) as ctx:
            credentials = seed_demo(ctx)

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"attendance_api: port {args.port} on {args.host} is already in use (another "
                "run?). Choose a free one with --port or ATTENDANCE_PORT; with scripts/run.sh: "
                "ATTENDANCE_PORT=8001 PUSHERD_PORT=8081 bash scripts/run.sh"
            ) from None
        raise SystemExit(
            f"attendance_api: cannot listen on {args.host}:{args.port}: {err}"
        ) from None
    sock.listen(512)
    port = sock.getsockname()[1]
    base = f"http://{args.host}:{port}"
    print(f"attendance_api listening on {base}/", flush=True)
    print_banner(base, config, credentials)
    server = QuietServer(uvicorn.Config(create_app(runtime), log_level="info", proxy_headers=False))
    server.run(sockets=[sock])


def print_banner(base: str, config: Config, credentials: dict[str, str]) -> None:
    """What to open (one URL: the sign-in page) and how to sign in; the rest as paths."""
    frontend = (
        "the web frontend"
        if (FRONTEND_DIST / "index.html").is_file()
        else ("the web frontend, once built: bash scripts/build-frontend.sh")
    )
    print(f"  Open {base}/ in a browser ({frontend}) and sign in", end="")
    if credentials:
        print(" with a demo login:")
        for email, password in credentials.items():
            print(f"    {email:32} {password}")
    elif config.admin_email:
        print(f" as {config.admin_email} (password from ATTENDANCE_ADMIN_PASSWORD).")
    else:
        print(
            " with an existing account (on an empty database set ATTENDANCE_ADMIN_EMAIL and "
            "ATTENDANCE_ADMIN_PASSWORD, or use --demo)."
        )
    print("  API under /api (OpenAPI document at /openapi.json).")
    print(f"  Database: {config.database_url.split('@')[-1]}")
    echo = config.echo_address()
    if echo is not None and config.pusher is not None:
        host, ws_port, scheme, key = echo
        print(
            f"  Realtime: pusherd app {config.pusher.app_id} at {host}:{ws_port} ({scheme}), "
            f"key {key}; Echo authorises at /broadcasting/auth."
        )
    else:
        print(
            "  Realtime: off (set PUSHER_APP_ID/KEY/SECRET, PUSHER_HOST/PORT; events wait "
            "in the outbox, pages poll)"
        )
    sys.stdout.flush()


class QuietServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after its graceful shutdown (which
    surfaced as KeyboardInterrupt/CancelledError tracebacks, or killed the process before the
    pusherd child was stopped). SIGINT and SIGTERM, once or repeatedly (Ctrl-C in run.sh
    sends SIGINT to the whole group, then run.sh sends SIGTERM), all mean one thing: shut
    down gracefully, lifespan shutdown included, then return from `serve`."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        def request_exit(*_: object) -> None:
            self.should_exit = True

        previous = {
            sig: signal.signal(sig, request_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def stop_pusherd(process: subprocess.Popen[str] | None, folder: str | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    # A signal before the server runs (during migration or seeding) ends the command quietly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
