"""End-to-end plumbing: attendance_api served by uvicorn on a real socket (port 0), a real
Laravel Echo client in Node (tests/attendance/e2e/echo_client.cjs), and the pusherd config."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from attendance_api.app import create_app
from attendance_api.runtime import Runtime

E2E = Path(__file__).resolve().parent / "e2e"
REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "protocol_tests" / "node_modules"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

APP_ID, APP_KEY, APP_SECRET = "4242", "e2e-app-key", "e2e-app-secret-0123456789"


def pusherd_config(port: int = 0) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = {port}
activity_timeout = 30

[[apps]]
id = "{APP_ID}"
key = "{APP_KEY}"
secret = "{APP_SECRET}"
enable_client_events = false
allowed_origins = ["*"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(runtime: Runtime) -> Iterator[str]:
    """Serve the app (with its outbox dispatcher) on 127.0.0.1, port 0; yields the base URL.
    The socket is bound and listening before the thread starts, so no readiness wait."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class EchoClient:
    """One Node process running Laravel Echo; its JSON lines are collected as they arrive."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.raw: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue  # pusher-js or node diagnostics
        self.lines.put({"type": "exit"})

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first message (already seen or arriving) matching `predicate`."""
        for message in self.seen:
            if predicate(message):
                return message
        while True:
            try:
                message = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    "timed out; client printed:\n" + "".join(self.raw)[-4000:]
                ) from None
            self.seen.append(message)
            if message.get("type") == "exit":
                raise AssertionError("client exited:\n" + "".join(self.raw)[-4000:])
            if predicate(message):
                return message

    def events(self, event: str, channel: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.seen
            if m.get("type") == "event" and m["event"] == event and m["channel"] == channel
        ]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def subscribed(channel: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("type") == "subscribed" and m.get("channel") == channel


def refused(channel: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("type") == "error" and m.get("channel") == channel


def event(name: str, channel: str, action: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: (
        m.get("type") == "event"
        and m.get("event") == name
        and m.get("channel") == channel
        and (action is None or m["data"].get("action") == action)
    )


def echo_config(
    ws_port: int, auth_endpoint: str, token: str, subscriptions: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "key": APP_KEY,
        "wsHost": "127.0.0.1",
        "wsPort": ws_port,
        "authEndpoint": auth_endpoint,
        "token": token,
        "subscriptions": subscriptions,
    }


def echo_in_node(config: dict[str, Any]) -> EchoClient:
    assert NODE is not None, "node is required"
    return EchoClient([NODE, str(E2E / "echo_client.cjs"), json.dumps(config)])


def echo_in_chromium(page_url: str) -> EchoClient:
    assert NODE is not None, "node is required"
    return EchoClient([NODE, str(E2E / "browser_echo.cjs"), page_url])


STATIC = {
    "/echo.html": (E2E / "echo_page.html", "text/html"),
    "/pusher.min.js": (
        NODE_MODULES / "pusher-js" / "dist" / "web" / "pusher.min.js",
        "application/javascript",
    ),
    "/echo.iife.js": (
        NODE_MODULES / "laravel-echo" / "dist" / "echo.iife.js",
        "application/javascript",
    ),
}


@contextmanager
def serve_page() -> Iterator[str]:
    """A static origin (different from the API's) serving the Echo page and the web builds."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            entry = STATIC.get(self.path.split("?")[0])
            if entry is None:
                self.send_error(404)
                return
            body = entry[0].read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", entry[1])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
