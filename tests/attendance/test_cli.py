"""`python -m attendance_api --demo --with-pusherd`: starts, migrates a new SQLite file, seeds
the demo, starts pusherd beside it, and prints what to open and how to log in."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def test_the_command_prints_where_to_go_and_the_demo_logins_work(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ATTENDANCE_TICK_SECONDS": "0"}
    for name in list(env):
        if name.startswith(("PUSHER_", "ATTENDANCE_ADMIN_")):
            env.pop(name)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attendance_api",
            "--demo",
            "--with-pusherd",
            "--port",
            "0",
            "--database-url",
            f"sqlite:///{tmp_path / 'demo.db'}",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
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
    try:
        assert ready.wait(60), "".join(lines)
        text = "".join(lines)
        base = re.search(r"attendance_api listening on (http://\S+)", text).group(1)  # type: ignore[union-attr]
        assert f"{base}/openapi.json" in text and "pusherd listening on" in text
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
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines)
