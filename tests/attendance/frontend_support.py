"""Plumbing for the web frontend's browser tests: attendance_api as a real process (`python -m
attendance_api --demo`, port 0) publishing to a real pusherd, and a real headless Chromium
driven command by command (tests/attendance/e2e/browser_driver.cjs, playwright-core)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .e2e_support import APP_ID, APP_KEY, APP_SECRET, E2E, NODE, REPO

ARTIFACTS = REPO / "artifacts" / "frontend"
FRONTEND_DIST = REPO / "attendance_api" / "frontend" / "dist"


def build_frontend() -> None:
    """Build the frontend if its sources changed (a no-op when dist/ is current)."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-frontend.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (FRONTEND_DIST / "index.html").is_file()


@dataclass
class ApiProcess:
    """`python -m attendance_api --demo` on 127.0.0.1, port 0: its URL and the demo logins."""

    process: subprocess.Popen[str]
    base: str
    passwords: dict[str, str]
    output: list[str] = field(default_factory=list)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def run_api(tmp: Path, pusherd_port: int, port: int = 0) -> Iterator[ApiProcess]:
    """`python -m attendance_api --demo` on 127.0.0.1:`port` (0: any free port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHER_", "ATTENDANCE_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        ATTENDANCE_TICK_SECONDS="0",
        ATTENDANCE_OUTBOX_MAX_BACKOFF="1",
        PUSHER_APP_ID=APP_ID,
        PUSHER_APP_KEY=APP_KEY,
        PUSHER_APP_SECRET=APP_SECRET,
        PUSHER_HOST="127.0.0.1",
        PUSHER_PORT=str(pusherd_port),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attendance_api",
            "--demo",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp / 'frontend.db'}",
        ],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "cora@demo.attendance.test" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or process.poll() is not None:
        process.kill()
        process.wait()
        raise AssertionError("attendance_api did not start:\n" + "".join(lines))
    text = "".join(lines)
    match = re.search(r"attendance_api listening on (http://[^/\s]+)", text)
    assert match, text
    passwords = dict(re.findall(r"^\s+(\S+@demo\.attendance\.test)\s+(\S+)$", text, re.M))
    api = ApiProcess(process, match.group(1), passwords, lines)
    try:
        yield api
    finally:
        api.stop()


class Browser:
    """One Chromium; `call` runs a driver command, `events` are the pages' requests, WebSocket
    frames and errors as they were reported (with the browser's Date.now() in `t`)."""

    def __init__(self) -> None:
        assert NODE is not None, "node is required"
        self.process = subprocess.Popen(
            [NODE, str(E2E / "browser_driver.cjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._next = 0
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.replies.get(timeout=60)
        assert first.get("type") == "ready", first

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("type") in ("reply", "ready", "fatal"):
                self.replies.put(message)
            else:
                with self._lock:
                    self.events.append(message)
                    self._lock.notify_all()
        self.replies.put({"type": "fatal", "text": "driver exited"})

    def call(self, op: str, **args: Any) -> Any:
        """Run `op` in the browser; `timeout` (ms), where given, is the browser-side bound."""
        self._next += 1
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"id": self._next, "op": op, **args}) + "\n")
        self.process.stdin.flush()
        try:
            reply = self.replies.get(timeout=90 + args.get("timeout", 0) / 1000)
        except queue.Empty:
            raise AssertionError(f"browser did not answer {op}") from None
        if reply.get("type") == "fatal":
            raise AssertionError("browser driver failed:\n" + "".join(self.raw)[-4000:])
        assert reply["id"] == self._next, reply
        if not reply["ok"]:
            page = args.get("page")
            # the page's recent frames and requests (a request's "t" is when it was sent),
            # and what the awaited element shows now: enough to tell a late event from a
            # stale render
            recent = [json.dumps(e)[:1200] for e in self.snapshot() if e.get("page") == page][-60:]
            shown = ""
            if op == "wait" and "selector" in args and "_diagnosing" not in args:
                try:
                    shown = "now shown: " + repr(
                        self.call("text", page=page, selector=args["selector"], _diagnosing=1)
                    )
                except AssertionError as exc:
                    shown = f"now shown: (unreadable: {str(exc)[:200]})"
            raise AssertionError(f"{op} {args}: {reply['error']}\n{shown}\n" + "\n".join(recent))
        return reply["value"]

    def forget(self) -> None:
        """Drop the events seen so far (each test starts with a clean record)."""
        with self._lock:
            self.events.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def requests(self, page: str, prefix: str, since: float = 0) -> list[dict[str, Any]]:
        """API requests of `page` whose path starts with `prefix`, made at or after `since`."""
        return [
            e
            for e in self.snapshot()
            if e["type"] == "request"
            and e["page"] == page
            and e["t"] >= since
            and re.sub(r"^https?://[^/]+", "", e["url"]).startswith(prefix)
        ]

    def frames(self, page: str, direction: str) -> list[dict[str, Any]]:
        out = []
        for e in self.snapshot():
            if e["type"] == "ws" and e["page"] == page and e["dir"] == direction:
                try:
                    out.append({**json.loads(e["data"]), "t": e["t"]})
                except ValueError:
                    continue
        return out

    def wait_for_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first reported event matching `predicate`, waiting for it up to `timeout` s."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lock:
            while True:
                for e in self.events[seen:]:
                    if predicate(e):
                        return e
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for a browser event")
                self._lock.wait(left)  # woken by the reader thread on each new event

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
