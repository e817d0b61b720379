"""`python -m attendance_api [--demo] [--host H] [--port P] [--database-url URL]
[--with-pusherd]`: migrate, optionally seed the demo, serve with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import uvicorn

from .app import create_app
from .demo import seed_demo
from .runtime import Config, Runtime


def start_pusherd(host: str) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    """Run `python -m pusherd` (a separate process, never imported) with fresh credentials."""
    app_id, key, secret = (
        str(secrets.randbelow(900000) + 100000),
        secrets.token_hex(10),
        secrets.token_hex(20),
    )
    folder = Path(tempfile.mkdtemp(prefix="attendance-pusherd-"))
    config = folder / "pusherd.toml"
    config.write_text(
        f'[server]\nhost = "{host}"\nport = 0\nactivity_timeout = 30\n\n[[apps]]\n'
        f'id = "{app_id}"\nkey = "{key}"\nsecret = "{secret}"\nenable_client_events = false\n'
        f'allowed_origins = ["*"]\n'
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
    env = dict(os.environ)
    if args.with_pusherd:
        pusherd, pusher_env, pusherd_dir = start_pusherd(args.host)
        env.update(pusher_env)
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
    sock.bind((args.host, args.port))
    sock.listen(512)
    port = sock.getsockname()[1]
    base = f"http://{args.host}:{port}"
    print(f"attendance_api listening on {base}", flush=True)
    print(f"  API:      {base}/api   (OpenAPI document: {base}/openapi.json)")
    print(f"  Database: {config.database_url.split('@')[-1]}")
    if config.pusher:
        p = config.pusher
        print(
            f"  Realtime: pusherd {p.scheme}://{p.host}:{p.port} app {p.app_id} "
            f"(Echo: broadcaster 'reverb', key {p.key}, wsHost {p.host}, wsPort {p.port}, "
            f"authEndpoint {base}/api/broadcasting/auth)"
        )
    else:
        print(
            "  Realtime: off (set PUSHER_APP_ID/KEY/SECRET, PUSHER_HOST/PORT; events wait "
            "in the outbox)"
        )
    if credentials:
        print(
            "  Log in with POST /api/auth/login {email, password}, or the original frontend "
            "with NEXT_PUBLIC_API_URL=" + base + "/api :"
        )
        for email, password in credentials.items():
            print(f"    {email:32} {password}")
    elif config.admin_email:
        print(f"  Log in as {config.admin_email} (password from ATTENDANCE_ADMIN_PASSWORD)")
    else:
        print(
            "  Log in with an existing account; on an empty database set "
            "ATTENDANCE_ADMIN_EMAIL and ATTENDANCE_ADMIN_PASSWORD (or use --demo)"
        )
    sys.stdout.flush()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), log_level="info", proxy_headers=False)
    )
    # uvicorn shuts down gracefully, then re-raises the signal it caught: turn that into a
    # normal exit so the pusherd child is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if pusherd is not None:
            pusherd.terminate()
            pusherd.wait(10)
            shutil.rmtree(pusherd_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
