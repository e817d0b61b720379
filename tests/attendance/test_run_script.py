"""`bash scripts/run.sh` as a user runs it: one URL (the sign-in page) and the demo logins,
a database per port, a clear refusal when a port is taken, a clean stop on Ctrl-C (SIGINT
to the whole process group, as a terminal sends it) and on SIGHUP (the terminal closing), and
a pusherd that dies restarted while attendance_api keeps serving."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from websockets.sync.client import ClientConnection, connect

from .e2e_support import free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def run_script(
    pusherd_port: int, attendance_port: int
) -> Iterator[tuple[subprocess.Popen[str], list[str], threading.Event]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHER", "ATTENDANCE_"))}
    env.update(
        PUSHERD_PORT=str(pusherd_port), ATTENDANCE_PORT=str(attendance_port), PYTHONUNBUFFERED="1"
    )
    process = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group, like a terminal job
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Database: " in line:  # printed after the demo logins
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield process, lines, ready
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        reader.join(10)
        for suffix in ("", "-wal", "-shm"):
            (REPO / f"attendance-{attendance_port}.db{suffix}").unlink(missing_ok=True)
        for suffix in ("log", "pid", "toml", "journal"):
            (REPO / ".run" / f"pusherd-{pusherd_port}.{suffix}").unlink(missing_ok=True)


@contextmanager
def pusher_socket(port: int) -> Iterator[tuple[ClientConnection, str]]:
    """A WebSocket to run.sh's pusherd (the development app, key `app-key`) and its socket id."""
    with connect(f"ws://127.0.0.1:{port}/app/app-key?protocol=7") as ws:
        established = json.loads(ws.recv(timeout=10))
        assert established["event"] == "pusher:connection_established", established
        yield ws, json.loads(established["data"])["socket_id"]


def subscribe(
    ws: ClientConnection, socket_id: str, base: str, logins: dict[str, str], who: str, channel: str
) -> int:
    """Sign `who` in, authorise `channel` at /broadcasting/auth as Echo does, subscribe and
    wait for the subscription to succeed; return the user's id."""
    email = f"{who}@demo.attendance.test"
    login = httpx.post(f"{base}/api/auth/login", json={"email": email, "password": logins[email]})
    assert login.status_code == 200, login.text
    auth = httpx.post(
        f"{base}/broadcasting/auth",
        headers={"Authorization": f"Bearer {login.json()['token']}", "Accept": "application/json"},
        data={"socket_id": socket_id, "channel_name": channel},
    )
    assert auth.status_code == 200, auth.text
    ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, **auth.json()}}))
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("event") == "pusher_internal:subscription_succeeded":
            assert frame["channel"] == channel, frame
            return int(login.json()["user"]["id"])


def test_run_sh_prints_one_url_and_stops_cleanly_on_ctrl_c() -> None:
    pusherd_port, attendance_port = free_port(), free_port()
    with run_script(pusherd_port, attendance_port) as (process, lines, ready):
        # a first run on a fresh machine installs packages and builds the frontend
        assert ready.wait(600) and process.poll() is None, "".join(lines)
        text = "".join(lines)
        urls = set(re.findall(r"https?://\S+", text))
        assert urls == {f"http://127.0.0.1:{attendance_port}/"}, text
        assert f"Database: sqlite:///attendance-{attendance_port}.db" in text
        page = httpx.get(f"http://127.0.0.1:{attendance_port}/")
        assert page.status_code == 200 and '<div id="root">' in page.text
        # the run's files stay out of `git status`: the database with SQLite's side files
        names = [f"attendance-{attendance_port}.db{s}" for s in ("", "-wal", "-shm")]
        ignored = subprocess.run(
            ["git", "check-ignore", *names, f".run/pusherd-{pusherd_port}.log"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert ignored.stdout.split() == [*names, f".run/pusherd-{pusherd_port}.log"], ignored
        # pusherd tells attendance_api who is online: a user joins presence-online, and the
        # admin's channel gets employee.updated saying so (sent after pusherd's webhook)
        logins = dict(re.findall(r"^\s+(\S+@demo\.attendance\.test)\s+(\S+)$", text, re.M))
        base = f"http://127.0.0.1:{attendance_port}"
        with pusher_socket(pusherd_port) as (admin, admin_socket):
            subscribe(admin, admin_socket, base, logins, "admin", "private-admin.employees")
            with pusher_socket(pusherd_port) as (ana, ana_socket):
                ana_id = subscribe(ana, ana_socket, base, logins, "ana", "presence-online")
                deadline = time.monotonic() + 15
                while True:
                    frame = json.loads(admin.recv(timeout=max(0.1, deadline - time.monotonic())))
                    if frame.get("event") == "employee.updated":
                        data = json.loads(frame["data"])
                        if data["id"] == ana_id and data["online_now"]:
                            break
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        code = process.wait(60)
    text = "".join(lines)
    assert code == 0, text
    for bad in ("Traceback", "CancelledError", "SystemExit", "KeyboardInterrupt"):
        assert bad not in text, text
    assert "shutdown complete: background tasks stopped, database closed" in text, text
    assert "attendance_api stopped" in text, text
    for port in (pusherd_port, attendance_port):  # both servers are gone
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_run_sh_refuses_a_busy_port_and_names_the_overrides() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        with run_script(free_port(), busy) as (process, lines, _):
            code = process.wait(600)
    text = "".join(lines)
    assert code == 1, text
    assert f"Port {busy} (attendance_api) is already in use" in text, text
    assert "PUSHERD_PORT=" in text and "ATTENDANCE_PORT=" in text


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` (a cheap probe of another process) every 0.1 s up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_run_sh_restarts_a_dead_pusherd_keeps_serving_and_stops_gracefully_on_sighup() -> None:
    pusherd_port, attendance_port = free_port(), free_port()
    with run_script(pusherd_port, attendance_port) as (process, lines, ready):
        assert ready.wait(600) and process.poll() is None, "".join(lines)
        pid_file = REPO / ".run" / f"pusherd-{pusherd_port}.pid"
        first = int(pid_file.read_text())
        wait_until(lambda: listening(pusherd_port), 30, "pusherd to listen")
        os.kill(first, signal.SIGKILL)  # pusherd dies hard

        # the web app keeps serving meanwhile, and pusherd comes back on its port
        wait_until(lambda: "pusherd restarted" in "".join(lines), 30, "the restart")
        text = "".join(lines)
        assert "pusherd exited with status 137; restarting it in 1 s" in text, text
        assert process.poll() is None, text
        assert httpx.get(f"http://127.0.0.1:{attendance_port}/api/settings").status_code == 200
        second = int(pid_file.read_text())
        assert second != first
        wait_until(lambda: listening(pusherd_port), 30, "the new pusherd to listen")

        # closing the terminal: SIGHUP to the whole group stops both in order, like Ctrl-C
        os.killpg(process.pid, signal.SIGHUP)
        code = process.wait(60)
        log = (REPO / ".run" / f"pusherd-{pusherd_port}.log").read_text()
    text = "".join(lines)
    assert code == 0, text
    assert "shutdown complete: background tasks stopped, database closed" in text, text
    assert "attendance_api stopped" in text, text
    for port in (pusherd_port, attendance_port):
        assert not listening(port)
    # the restarted pusherd drained and stopped (it logs to its file, not the terminal)
    assert log.rstrip().endswith("pusherd stopped") and "shutting down: draining" in log, log
