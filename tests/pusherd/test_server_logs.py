"""Logs of a real process: one line per event that matters, JSON or text, the --debug
frame log with socket ids, the banner apart from the log lines, and never a secret or an
auth signature at any level."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.pusherd.wire import (
    AppCredentials,
    Client,
    call,
    channel_auth,
    error_code,
    http_request,
    sdk,
    signed_query,
    user_auth,
)
from tests.support.pusherd_process import REPO_ROOT

SECRET = "quagga-Secret-5521-never-logged"
MASTER_KEY = base64.b64encode(b"k" * 32).decode()
CONSOLE_TOKEN = "console-Token-8842-never-logged"
APP = AppCredentials("1001", "app-key", SECRET)
TOML = f"""
[server]
host = "127.0.0.1"
port = 0
max_request_size = 4096
drain_grace = 0

[[apps]]
id = "1001"
key = "app-key"
secret = "{SECRET}"
enable_client_events = true
encryption_master_key_base64 = "{MASTER_KEY}"

[[apps]]
id = "1002"
key = "strict-key"
secret = "{SECRET}-2"
allowed_origins = ["https://app.example.com"]

[console]
enabled = true
token = "{CONSOLE_TOKEN}"
"""


class Process:
    """pusherd with stdout and stderr read apart (banner vs log lines)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.port = 0
        self._pumps: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> Process:
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("PUSHERD_", "REVERB_"))}
        child_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pusherd", *args, cwd=REPO_ROOT, env=child_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        running = cls(process)
        assert process.stdout is not None and process.stderr is not None
        if "json" in args:  # the banner is one JSON record on stderr, stdout stays empty
            first = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            running.stderr.append(first)
            record = json.loads(first)
            assert record["event"] == "listening", first
            assert record["message"] == "pusherd listening on " + record["url"]
            url = record["url"]
        else:
            first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            running.stdout.append(first)
            url = first.removeprefix("pusherd listening on ").strip()
        assert url.startswith("http://127.0.0.1:"), first
        running.port = int(url.rsplit(":", 1)[1])
        running._pumps = [asyncio.create_task(running._pump(process.stdout, running.stdout)),
                          asyncio.create_task(running._pump(process.stderr, running.stderr))]
        return running

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, sink: list[str]) -> None:
        async for line in stream:
            sink.append(line.decode(errors="replace"))

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 30)
        await asyncio.wait_for(asyncio.gather(*self._pumps), 10)
        return code


async def _signed(port: int, method: str, path: str, body: bytes, signatures: list[str],
                  **signing: Any) -> int:
    query = signed_query(method, path, body, app=signing.pop("app", APP), **signing)
    signatures.append(query.rsplit("auth_signature=", 1)[1])
    return (await http_request(port, method, f"{path}?{query}", body)).status


async def _full_run(port: int, signatures: list[str]) -> None:
    """Every kind of operation, good and bad, remembering each signature sent."""
    assert await _signed(port, "POST", "/apps/1001/events",
                         b'{"name":"e","channels":["a"],"data":""}', signatures,
                         secret="forged") == 401
    assert await _signed(port, "GET", "/apps/1001/channels", b"", signatures,
                         timestamp=1) == 401
    # A short string to sign: a message cut at 200 characters would reach what was sent.
    assert await _signed(port, "GET", "/apps/1001/channels", b"", signatures,
                         secret="forged") == 401
    assert (await http_request(port, "POST", "/apps/1001/events", b"x" * 5000)).status == 413
    unknown = await Client.open(port, "no-such-key", handshake=False)
    assert error_code(await unknown.recv()) == 4001
    await unknown.closed()
    stranger = await Client.open(port, "strict-key", handshake=False,
                                 origin="https://evil.example.org")
    assert error_code(await stranger.recv()) == 4009
    await stranger.closed()

    client = await Client.open(port, origin="https://app.example.com")
    forged = channel_auth(client.socket_id, "private-x", app=APP, secret="forged")
    signatures.append(forged.split(":", 1)[1])
    assert error_code(await client.subscribe("private-x", forged)) == 4009
    await client.barrier()
    good = channel_auth(client.socket_id, "private-x", app=APP)
    signatures.append(good.split(":", 1)[1])
    await client.subscribe_ok("private-x", good)
    member = json.dumps({"user_id": "u1", "user_info": {"name": "Una"}})
    presence = channel_auth(client.socket_id, "presence-room", member, app=APP)
    signatures.append(presence.split(":", 1)[1])
    await client.subscribe_ok("presence-room", presence, member)
    other = await Client.open(port)
    other_auth = channel_auth(other.socket_id, "private-x", app=APP)
    signatures.append(other_auth.split(":", 1)[1])
    await other.subscribe_ok("private-x", other_auth)
    user_data = '{"id":"u1"}'
    signin = user_auth(client.socket_id, user_data, app=APP)
    signatures.append(signin.split(":", 1)[1])
    await client.send({"event": "pusher:signin",
                       "data": {"auth": signin, "user_data": user_data}})
    await client.expect("pusher:signin_success")
    await client.send({"event": "client-typing", "channel": "private-x", "data": {"n": 1}})
    await other.expect("client-typing", "private-x")
    assert await _signed(port, "POST", "/apps/1001/events",
                         b'{"name":"e","channels":["private-x"],"data":"d"}',
                         signatures) == 200
    await other.expect("e", "private-x")
    pusher = sdk(port, APP)
    await call(pusher.trigger_batch, [{"channel": "private-x", "name": "b", "data": "1"}])
    await other.expect("b", "private-x")
    await call(pusher.channels_info, "presence-", ["user_count"])
    await call(pusher.users_info, "presence-room")
    console = await http_request(port, "GET", f"/console/events?token={CONSOLE_TOKEN}")
    assert console.status == 200 and console.json()["events"]
    assert await _signed(port, "POST", "/apps/1001/users/u1/terminate_connections", b"{}",
                         signatures) == 200
    code, _ = await client.closed()
    assert code == 4009
    await other.close()


async def test_a_full_run_logs_each_event_once_and_never_a_secret_or_signature(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pusherd.toml"
    config.write_text(TOML)
    running = await Process.start("--config", str(config), "--port", "0", "--debug",
                                  "--log-format", "json")
    signatures: list[str] = []
    try:
        await _full_run(running.port, signatures)
    finally:
        assert await running.stop() == 0
    stderr, stdout = "".join(running.stderr), "".join(running.stdout)
    assert len(signatures) >= 8
    for secret in (SECRET, MASTER_KEY, CONSOLE_TOKEN, *signatures):
        assert secret not in stderr and secret not in stdout, secret
    # Not even a part of a signature: no 10 hex digits of one in a row (windows of
    # decimal digits only are skipped: socket ids and times are made of those).
    for signature in signatures:
        for start in range(len(signature) - 9):
            piece = signature[start:start + 10]
            if not piece.isdigit():
                assert piece not in stderr and piece not in stdout, (signature, piece)
    # Every log line is one JSON object; collect them by event.
    lines = [json.loads(line) for line in running.stderr]
    events: dict[str, list[dict[str, Any]]] = {}
    for entry in lines:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        events.setdefault(entry.get("event", ""), []).append(entry)
    opened = events["connection_opened"]
    assert len(opened) == 2
    assert opened[0]["app_id"] == "1001" and opened[0]["origin"] == "https://app.example.com"
    assert opened[0]["remote"].startswith("127.0.0.1:") and opened[0]["protocol"] == "7"
    closed = events["connection_closed"]
    assert sorted(e["code"] for e in closed) == [1000, 4009]
    terminated = next(e for e in closed if e["code"] == 4009)
    assert terminated["messages"] >= 6 and terminated["duration_s"] >= 0
    refused = {e["code"]: e for e in events["connection_refused"]}
    assert refused[4001]["app_key"] == "no-such-key"
    assert refused[4009]["origin"] == "https://evil.example.org"
    api_errors = {(e["status"], e["endpoint"]) for e in events["api_error"]}
    assert {(401, "events"), (401, "channels"), (413, "events")} <= api_errors
    assert all(e["app_id"] in ("1001", "") for e in events["api_error"])
    assert [e["channel"] for e in events["client_error"]] == ["private-x"]
    # The frame log: every frame in and out with its socket id, signatures redacted.
    frames = [e["message"] for e in lines if e["logger"] == "pusherd.ws.debug"]
    assert any(m.startswith("in ") and "pusher:subscribe" in m and "<redacted>" in m
               for m in frames)
    assert any(m.startswith("out ") and "pusher:signin_success" in m for m in frames)
    assert any(m.startswith("out ") and "close 4009" in m for m in frames)
    # Control frames too: the client's close and the server's echo of it.
    assert any(m.startswith("in ") and " close 1000" in m for m in frames)
    assert any(m.startswith("out ") and " close 1000" in m for m in frames)
    # In JSON format stdout stays empty: the banner is the first record on stderr, with
    # the banner's lines as a list, and the stop is a record too.
    assert stdout == ""
    banner = events["listening"]
    assert len(banner) == 1 and lines[0] is banner[0]
    assert any("stop: SIGTERM" in line for line in banner[0]["banner"])
    assert any("/ready" in line for line in banner[0]["banner"])
    assert [e["message"] for e in events["stopped"]] == ["pusherd stopped"]


async def test_text_logs_at_the_default_level_show_connections_and_refusals(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pusherd.toml"
    config.write_text(TOML)
    running = await Process.start("--config", str(config), "--port", "0")
    try:
        client = await Client.open(running.port)
        unknown = await Client.open(running.port, "wrong-key", handshake=False)
        assert error_code(await unknown.recv()) == 4001
        await unknown.closed()
        await client.close()
    finally:
        assert await running.stop() == 0
    stderr = "".join(running.stderr)
    assert f"connection opened app=1001 socket_id={client.socket_id}" in stderr
    assert f"connection closed app=1001 socket_id={client.socket_id} code=1000" in stderr
    assert "connection refused code=4001 app=- key=wrong-key" in stderr
    assert "pusherd.ws.debug" not in stderr  # frames only with --debug


async def test_configured_webhooks_are_said_to_be_undelivered_by_a_build_without_them(
    tmp_path: Path,
) -> None:
    from importlib.util import find_spec

    config = tmp_path / "pusherd.toml"
    config.write_text(TOML + '[[apps.webhooks]]\nurl = "http://127.0.0.1:9/hook"\n')
    running = await Process.start("--config", str(config), "--port", "0")
    assert await running.stop() == 0
    warned = "not delivered by this build" in "".join(running.stderr)
    # The other half of the rule is the webhook sender's: once pusherd.webhooks exists,
    # a configured webhook is delivered and this warning must go.
    assert warned == (find_spec("pusherd.webhooks") is None)


FORGED = "2026-11-30 00:00:00,000 WARNING pusherd.http: FORGED"


async def test_a_client_cannot_write_a_line_of_its_own_into_the_text_log(
    tmp_path: Path,
) -> None:
    """Newlines, carriage returns and terminal escapes in client-controlled values (a
    channel name, an event name, a close reason, an Origin, a key) are escaped in text
    lines: every line the server writes starts with its own timestamp."""
    config = tmp_path / "pusherd.toml"
    config.write_text(TOML)
    running = await Process.start("--config", str(config), "--port", "0")
    try:
        client = await Client.open(running.port)
        for channel in (f"private-x\n{FORGED}-1", f"bad name\r\n{FORGED}-2",
                        f"private-\x1b[2J\x1b[31mred\u2028{FORGED}-3"):
            frame = await client.subscribe(channel, "app-key:abc")
            assert frame["event"] in ("pusher:error", "pusher:subscription_error"), frame
        await client.send({"event": f"client-x\n{FORGED}-4", "channel": "nope", "data": {}})
        await client.barrier()
        await client.ws.close(code=4000, reason=f"bye\n{FORGED}-5")
        # A header cannot carry C0 controls, but it can carry C1 ones (read as latin-1):
        # CSI (a terminal escape) and NEL (a line break to some viewers).
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"GET /app/wrong-key?protocol=7 HTTP/1.1\r\nHost: x\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n"
                     b"Origin: https://a.example\x9b2K\x85FORGED-6\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(
            b"HTTP/1.1 101")
        assert b"4001" in await asyncio.wait_for(reader.read(1000), 5)
        writer.close()
    finally:
        assert await running.stop() == 0
    stderr = "".join(running.stderr)
    for number in (1, 2, 3, 5, 6):
        assert f"FORGED-{number}" in stderr, stderr  # the value is logged, escaped
    for control in ("\x1b", "\u2028", "\x9b", "\x85", "\r"):
        assert control not in stderr
    for line in running.stderr:
        assert line[:4].isdigit() and "FORGED" not in line[:40], line
    assert "\\nbye" not in stderr and f"reason=bye\\n{FORGED}-5" in stderr


async def test_at_level_warning_refused_subscriptions_and_rate_limits_are_kept(
    tmp_path: Path,
) -> None:
    """`--log-level warning` keeps refusals: a refused private subscription, a refused
    sign-in and client events over the rate limit are warnings."""
    config = tmp_path / "pusherd.toml"
    config.write_text(TOML.replace("enable_client_events = true",
                                   "enable_client_events = true\n"
                                   "max_client_events_per_second = 1"))
    running = await Process.start("--config", str(config), "--port", "0",
                                  "--log-level", "warning")
    try:
        client = await Client.open(running.port)
        refused = await client.subscribe("private-bad", "app-key:" + "0" * 64)
        assert refused["event"] in ("pusher:error", "pusher:subscription_error")
        await client.barrier()
        await client.send({"event": "pusher:signin", "data": {
            "auth": "app-key:" + "0" * 64, "user_data": '{"id":"1"}'}})
        assert error_code(await client.recv()) == 4009
        await client.subscribe_ok("private-ok", channel_auth(client.socket_id, "private-ok",
                                                             app=APP))
        for _ in range(3):
            await client.send({"event": "client-typing", "channel": "private-ok", "data": {}})
        await client.barrier()
        await client.close()
    finally:
        assert await running.stop() == 0
    stderr = "".join(running.stderr)
    assert "WARNING pusherd.ws: client error" in stderr and "channel=private-bad" in stderr
    assert "code=4009 channel=-" in stderr  # the sign-in
    assert "WARNING pusherd.ws: client events rate-limited" in stderr
    assert " INFO " not in stderr


async def test_debug_logs_every_frame_of_an_http_fallback_session_too(tmp_path: Path) -> None:
    from tests.pusherd.fallback_wire import Stream, new_session_path, send

    config = tmp_path / "pusherd.toml"
    config.write_text(TOML)
    running = await Process.start("--config", str(config), "--port", "0", "--debug",
                                  "--log-format", "json")
    signatures: list[str] = []
    try:
        session = new_session_path()
        stream = await Stream.open(running.port, session, key=APP.key)
        socket_id = await stream.handshake()
        auth = channel_auth(socket_id, "private-x", app=APP)
        signatures.append(auth.split(":", 1)[1])
        sent = await send(running.port, session, [
            {"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": auth}}],
            key=APP.key)
        assert sent.status == 204
        await stream.expect("pusher_internal:subscription_succeeded")
        assert await _signed(running.port, "POST", "/apps/1001/events",
                             b'{"name":"e","channels":["private-x"],"data":"d"}',
                             signatures) == 200
        await stream.expect("e")
        stream.abort()
    finally:
        assert await running.stop() == 0
    stderr = "".join(running.stderr)
    for secret in (SECRET, *signatures):
        assert secret not in stderr, secret
    frames = [entry["message"] for entry in map(json.loads, running.stderr)
              if entry["logger"] == "pusherd.ws.debug"]
    # The WebSocket frame log's format: "in|out <socket_id> <frame>", auth redacted.
    mine = [m for m in frames if m.split(" ", 2)[1:2] == [socket_id]]
    assert any(m.startswith("out ") and "pusher:connection_established" in m for m in mine)
    assert any(m.startswith("in ") and "pusher:subscribe" in m and "<redacted>" in m
               for m in mine), frames
    assert any(m.startswith("out ") and "pusher_internal:subscription_succeeded" in m
               for m in mine)
    assert any(m.startswith("out ") and '"event":"e"' in m for m in mine)
