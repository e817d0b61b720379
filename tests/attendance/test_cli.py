"""`python -m attendance_api --demo --with-pusherd`: starts, migrates a new SQLite file, seeds
the demo, starts pusherd beside it, prints what to open and how to log in, and stops cleanly
on SIGINT (and on the SIGINT + SIGTERM pair that Ctrl-C in scripts/run.sh delivers)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


class Command:
    """The command as a real process; its output is collected as it arrives."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ATTENDANCE_TICK_SECONDS": "0"}
        for name in list(env):
            if name.startswith(("PUSHER_", "ATTENDANCE_ADMIN_")):
                env.pop(name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attendance_api", *args],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "cora@demo.attendance.test" in line or "Application startup complete" in line:
                self.ready.set()
        self.ready.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def stop(self, *signals: int) -> int:
        for sig in signals:
            self.process.send_signal(sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(10)
        return self.process.returncode


def demo(tmp_path: Path, port: int = 0) -> Command:
    return Command(
        tmp_path,
        "--demo",
        "--with-pusherd",
        "--port",
        str(port),
        "--database-url",
        f"sqlite:///{tmp_path / 'demo.db'}",
    )


def assert_clean_stop(command: Command, code: int) -> None:
    text = command.text
    assert code == 0, text
    for bad in ("Traceback", "CancelledError", "SystemExit", "KeyboardInterrupt"):
        assert bad not in text, text
    # the app's own shutdown step ran to its end, then the command finished
    assert "shutdown complete: background tasks stopped, database closed" in text, text
    assert text.rstrip().endswith("attendance_api stopped"), text


def test_the_command_prints_where_to_go_and_the_demo_logins_work(tmp_path: Path) -> None:
    command = demo(tmp_path)
    try:
        assert command.ready.wait(60), command.text
        text = command.text
        base = re.search(r"attendance_api listening on (http://\S+)/", text).group(1)  # type: ignore[union-attr]
        assert f"Open {base}/ in a browser" in text and "pusherd listening on" in text
        banner = text[text.index("attendance_api listening on") :]
        assert re.findall(r"https?://\S+", banner) == [f"{base}/", f"{base}/"], banner
        passwords = dict(re.findall(r"^\s+(\S+@demo\.attendance\.test)\s+(\S+)$", text, re.M))
        assert len(passwords) == 4
        ana = httpx.post(
            f"{base}/api/auth/login",
            json={
                "email": "ana@demo.attendance.test",
                "password": passwords["ana@demo.attendance.test"],
            },
        )
        assert ana.status_code == 200, ana.text
        token, user = ana.json()["token"], ana.json()["user"]
        headers = {"Authorization": f"Bearer {token}"}
        dash = httpx.get(f"{base}/api/reports/employee-dashboard", headers=headers).json()
        assert dash["can_confirm"] is True, dash
        auth = httpx.post(
            f"{base}/broadcasting/auth",
            headers=headers,
            data={"socket_id": "1.1", "channel_name": f"private-user.{user['id']}"},
        )
        assert auth.status_code == 200 and ":" in auth.json()["auth"]
        assert httpx.get(f"{base}/openapi.json").json()["openapi"].startswith("3.")
        realtime = httpx.get(f"{base}/api/realtime/config").json()
        assert realtime["enabled"] and realtime["broadcaster"] == "reverb"
        assert realtime["authEndpoint"] == "/broadcasting/auth" and realtime["wsPort"] > 0
        assert "secret" not in str(realtime).lower()
    finally:
        code = command.stop(signal.SIGINT)
    assert_clean_stop(command, code)


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM), (signal.SIGINT, signal.SIGINT)],
    ids=["sigterm", "sigint-then-sigterm", "sigint-twice"],
)
def test_stop_signals_end_the_command_cleanly(tmp_path: Path, signals: tuple[int, ...]) -> None:
    command = demo(tmp_path)
    assert command.ready.wait(60), command.text
    # answered: uvicorn is serving (its signal handlers are in place)
    httpx.get(re.search(r"listening on (http://\S+)/", command.text).group(1) + "/up")  # type: ignore[union-attr]
    assert_clean_stop(command, command.stop(*signals))


def test_a_busy_port_is_named_with_the_way_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        command = Command(
            tmp_path, "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'x.db'}"
        )
        code = command.process.wait(60)
        command.reader.join(10)
    assert code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in command.text
    assert "ATTENDANCE_PORT" in command.text and "PUSHERD_PORT" in command.text
    assert "Traceback" not in command.text
