"""pusherd as a process: the CLI, graceful shutdown on SIGTERM, secrets never printed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets

from tests.pusherd.wire import (
    AppCredentials,
    Client,
    call,
    channel_auth,
    error_code,
    http_request,
    sdk,
    signed_request,
    user_auth,
)
from tests.support.pusherd_process import REPO_ROOT, run_pusherd

LISTENING = "pusherd listening on http://127.0.0.1:"
SCRUBBED_ENV = ("PUSHERD_HOST", "PUSHERD_PORT", "PUSHERD_APP_ID", "PUSHERD_APP_KEY",
                "PUSHERD_APP_SECRET", "REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET",
                "REVERB_SERVER_HOST", "REVERB_SERVER_PORT")


@dataclass
class Running:
    process: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def output(self) -> str:
        """Everything the process printed, once it has exited (read to EOF)."""
        assert self.reader is not None
        await asyncio.wait_for(self.reader, 15)
        return "".join(self.lines)


@asynccontextmanager
async def pusherd_process(*args: str, env: dict[str, str] | None = None,
                          open_files: int | None = None,
                          ignore_hangup: bool = False) -> AsyncIterator[Running]:
    """pusherd with stdout and stderr captured to EOF, so nothing printed is missed;
    `open_files` sets its open-file limit (soft and hard, as ``ulimit -n``);
    `ignore_hangup` starts it with SIGHUP ignored (as ``nohup`` does)."""
    child_env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    child_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
        if ignore_hangup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pusherd", *args, cwd=REPO_ROOT, env=child_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=limit_files)
    assert process.stdout is not None
    lines: list[str] = []
    port = 0
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            if not line:
                raise AssertionError("pusherd exited before listening:\n" + "".join(lines))
            lines.append(line)
            if line.startswith(LISTENING):
                port = int(line[len(LISTENING):].strip())
                break

        async def pump() -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                lines.append(raw.decode(errors="replace"))

        running = Running(process, port, lines, asyncio.create_task(pump()))
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_sigterm_tells_clients_to_reconnect_with_4200_and_exits_0() -> None:
    toml = ('[server]\nactivity_timeout = 120\n[[apps]]\nid = "1001"\nkey = "app-key"\n'
            'secret = "app-secret"\n')
    with run_pusherd(toml) as server:
        clients = [await Client.open(server.port) for _ in range(3)]
        await clients[0].subscribe_ok("orders")
        server.process.send_signal(signal.SIGTERM)
        for client in clients:
            code, frames = await client.closed(timeout=10)
            assert code == 4200
            assert [error_code(f) for f in frames] == [4200]
        exit_code = await asyncio.to_thread(server.process.wait, 15)
        assert exit_code == 0


async def test_sigint_also_shuts_down_cleanly() -> None:
    async with pusherd_process("--host", "127.0.0.1", "--port", "0") as running:
        client = await Client.open(running.port)
        running.process.send_signal(signal.SIGINT)
        code, _ = await client.closed(timeout=10)
        assert code == 4200
        assert await asyncio.wait_for(running.process.wait(), 15) == 0
        assert "pusherd stopped" in await running.output()


async def test_sighup_drains_like_sigterm_and_says_so() -> None:
    """A closing terminal (or an operator expecting a reload) sends SIGHUP: the clients
    are told to reconnect (4200), not cut off, and the log says what happened."""
    async with pusherd_process("--host", "127.0.0.1", "--port", "0") as running:
        client = await Client.open(running.port)
        running.process.send_signal(signal.SIGHUP)
        code, frames = await client.closed(timeout=10)
        assert code == 4200 and [error_code(f) for f in frames] == [4200]
        assert await asyncio.wait_for(running.process.wait(), 15) == 0
        output = await running.output()
    assert "SIGHUP: stopping with a drain" in output and "pusherd stopped" in output


async def test_a_sighup_ignored_at_start_stays_ignored() -> None:
    """Started with SIGHUP ignored (nohup, or scripts/run.sh, which stops its servers
    itself when the terminal closes), pusherd does not take the hangup as a stop: the
    SIGTERM after it is the first stop signal, not a second one that cuts the drain."""
    async with pusherd_process("--host", "127.0.0.1", "--port", "0",
                               ignore_hangup=True) as running:
        client = await Client.open(running.port)
        running.process.send_signal(signal.SIGHUP)
        running.process.send_signal(signal.SIGTERM)
        code, _ = await client.closed(timeout=10)
        assert code == 4200
        assert await asyncio.wait_for(running.process.wait(), 15) == 0
        output = await running.output()
    assert "pusherd stopped" in output
    assert "SIGHUP" not in output and "second stop signal" not in output, output


async def test_without_config_it_serves_the_dev_app_and_says_how_to_connect() -> None:
    async with pusherd_process("--port", "0") as running:
        client = await Client.open(running.port, "app-key")
        await client.subscribe_ok("orders")
        dev = AppCredentials("1001", "app-key", "app-secret")
        await call(sdk(running.port, dev).trigger, "orders", "hello", "world")
        assert (await client.expect("hello", "orders"))["data"] == "world"
        await client.close()
        running.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(running.process.wait(), 15)
        output = await running.output()
    assert "app-key" in output and "app-secret" in output and "1001" in output
    assert "wsHost" in output  # how to point pusher-js at it
    assert "REVERB_APP_KEY" in output  # and a Laravel .env


async def test_the_environment_defines_one_app_with_reverb_names() -> None:
    env = {"REVERB_APP_ID": "555", "REVERB_APP_KEY": "reverb-key",
           "REVERB_APP_SECRET": "reverb-secret"}
    async with pusherd_process("--port", "0", env=env) as running:
        client = await Client.open(running.port, "reverb-key")
        await client.subscribe_ok("orders")
        app = AppCredentials("555", "reverb-key", "reverb-secret")
        await call(sdk(running.port, app).trigger, "orders", "e", "x")
        await client.expect("e", "orders")
        await client.close()


async def test_a_node_at_its_open_file_limit_keeps_serving_its_http_api() -> None:
    """With ``ulimit -n 160``: once the node holds all the client connections it admits,
    a new WebSocket is refused (503) but the backend still reaches its clients through the
    HTTP API, /up is 200, /ready says why it is not ready, /metrics answers; and TCP
    connections that never send a request cannot take the HTTP reserve away."""
    async with pusherd_process("--host", "127.0.0.1", "--port", "0",
                               open_files=160) as running:
        banner = "".join(running.lines) + await _read_until(running, "open-file limit")
        found = re.search(r"at most (\d+) connections \(open-file limit 160\)", banner)
        assert found, banner
        admitted = int(found.group(1))
        assert 0 < admitted < 160 - 64
        clients = [await Client.open(running.port) for _ in range(admitted)]
        await clients[0].subscribe_ok("news")
        await clients[-1].subscribe_ok("news")
        with pytest.raises(websockets.InvalidStatus) as refused:
            await Client.open(running.port)
        assert refused.value.response.status_code == 503

        async def still_serving() -> None:
            reply = await http_request(running.port, "GET", "/up")
            assert (reply.status, reply.json()) == (200, {"status": "ok"})
            reply = await http_request(running.port, "GET", "/ready")
            assert (reply.status, reply.json()) == (503, {"status": "at_connection_limit"})
            reply = await http_request(running.port, "GET", "/metrics")
            assert reply.status == 200
            assert b'pusherd_connection_limit_refusals_total{app="",limit="open_files"}' \
                in reply.body
            await call(sdk(running.port).trigger, "news", "full", {"ok": True})
            for client in (clients[0], clients[-1]):
                await client.expect("full", "news")

        await still_serving()
        # More idle TCP connections than the HTTP reserve holds: the oldest are closed
        # to make room for requests, and the API stays reachable.
        idle = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(40)]
        await still_serving()
        for _, writer in idle:
            writer.close()
        for client in clients:
            await client.close()


async def _read_until(running: Running, text: str) -> str:
    """The lines printed after those already read, up to one containing `text`."""
    seen = len(running.lines)
    for _ in range(500):
        joined = "".join(running.lines[seen:])
        if text in joined:
            return joined
        await asyncio.sleep(0.01)
    raise AssertionError(f"{text!r} not printed: {''.join(running.lines)}")


async def test_a_bad_config_names_the_key_and_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "eighty"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pusherd", "--config", str(path), cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"server.port" in stderr and b"eighty" in stderr
    assert LISTENING.encode() not in stdout


SECRET = "zebra-Secret-7731-must-never-be-printed"
OTHER_SECRET = "okapi-Secret-4410-must-never-be-printed"


async def test_secrets_never_appear_in_the_server_output(tmp_path: Path) -> None:
    path = tmp_path / "pusherd.toml"
    path.write_text(
        '[server]\nlog_level = "debug"\n'
        f'[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "{SECRET}"\n'
        "enable_client_events = true\n"
        f'[[apps]]\nid = "1002"\nkey = "key-two"\nsecret = "{OTHER_SECRET}"\n')
    app = AppCredentials("1001", "app-key", SECRET)
    async with pusherd_process("--config", str(path), "--port", "0") as running:
        port = running.port
        # Bad signatures of every kind, then good traffic.
        assert (await signed_request(port, "POST", "/apps/1001/events",
                                     b'{"name":"e","channels":["a"],"data":""}', app=app,
                                     secret="forged")).status == 401
        assert (await signed_request(port, "GET", "/apps/1001/channels", app=app,
                                     timestamp=1)).status == 401
        client = await Client.open(port)
        refused = await client.subscribe(
            "private-x", channel_auth(client.socket_id, "private-x", app=app, secret="forged"))
        assert refused["event"] == "pusher:error"
        assert SECRET not in json.dumps(refused)
        await client.barrier()
        await client.send({"event": "pusher:signin", "data": {
            "auth": user_auth(client.socket_id, '{"id":"1"}', app=app, secret="forged"),
            "user_data": '{"id":"1"}'}})
        assert error_code(await client.recv()) == 4009
        await client.subscribe_ok("private-x", channel_auth(client.socket_id, "private-x",
                                                            app=app))
        user_data = '{"id":"1"}'
        await client.send({"event": "pusher:signin", "data": {
            "auth": user_auth(client.socket_id, user_data, app=app), "user_data": user_data}})
        await client.expect("pusher:signin_success")
        assert (await signed_request(port, "POST", "/apps/1001/events",
                                     b'{"name":"e","channels":["private-x"],"data":"d"}',
                                     app=app)).status == 200
        await client.expect("e", "private-x")
        assert (await signed_request(port, "POST", "/users/1/terminate_connections", b"{}",
                                     app=app)).status == 200
        code, _ = await client.closed()
        assert code == 4009
        # One app's secret used for the other.
        assert (await signed_request(port, "GET", "/apps/1002/channels",
                                     app=AppCredentials("1002", "key-two", SECRET))
                ).status == 401
        running.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(running.process.wait(), 15) == 0
        output = await running.output()
    assert LISTENING in output
    assert "DEBUG" in output  # the most verbose logging was on
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in output
        assert secret.lower() not in output.lower()


@pytest.mark.parametrize("flag", ["--version", "--help"])
async def test_the_cli_answers_version_and_help(flag: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pusherd", flag, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"pusherd" in stdout


async def test_a_non_numeric_reverb_app_id_is_served_with_a_warning_at_start() -> None:
    env = {"REVERB_APP_ID": "abc", "REVERB_APP_KEY": "reverb-key",
           "REVERB_APP_SECRET": "reverb-secret"}
    async with pusherd_process("--port", "0", env=env) as running:
        client = await Client.open(running.port, "reverb-key")
        await client.close()
        running.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(running.process.wait(), 15)
        output = await running.output()
    assert "WARNING pusherd.config: REVERB_APP_ID='abc' is not numeric" in output


async def test_the_environment_sets_the_secret_of_the_file_app_and_keeps_its_origins(
    tmp_path: Path,
) -> None:
    """The systemd setup: the app's settings in the TOML, its secret in the environment
    file. The secret is the environment's; the file's allowed origins still hold; a line
    at start says which source gave what."""
    path = tmp_path / "pusherd.toml"
    path.write_text('[[apps]]\nid = "4242"\nkey = "opskey"\nsecret = "placeholder-secret"\n'
                    'allowed_origins = ["https://app.example.com"]\n')
    env = {"REVERB_APP_ID": "4242", "REVERB_APP_KEY": "opskey",
           "REVERB_APP_SECRET": "RealSecretFromEnvFile"}
    app = AppCredentials("4242", "opskey", "RealSecretFromEnvFile")
    async with pusherd_process("--config", str(path), "--port", "0", env=env) as running:
        client = await Client.open(running.port, "opskey", origin="https://app.example.com")
        await client.subscribe_ok("news")
        await call(sdk(running.port, app).trigger, "news", "e", "x")
        await client.expect("e", "news")
        stranger = await Client.open(running.port, "opskey", origin="https://evil.example",
                                     handshake=False)
        assert error_code(await stranger.recv()) == 4009
        placeholder = AppCredentials("4242", "opskey", "placeholder-secret")
        assert (await signed_request(running.port, "GET", "/apps/4242/channels",
                                     app=placeholder)).status == 401
        await client.close()
        running.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(running.process.wait(), 15)
        output = await running.output()
    assert "apps[0] (id 4242, key opskey) of the config file takes secret from the " \
        "environment (REVERB_APP_SECRET)" in output
    assert "RealSecretFromEnvFile" not in output


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.mark.parametrize("problem", ["passphrase", "mismatch"])
async def test_a_tls_key_it_cannot_use_stops_the_start_naming_the_key(
    tmp_path: Path, problem: str,
) -> None:
    """A key with a passphrase never makes pusherd ask on the terminal (a start that
    blocks); it, and a key that is not the certificate's, stop the start with exit code 2
    and a message naming server.tls.key_file."""
    cert, key, other = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "other.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert))
    if problem == "passphrase":
        _openssl("pkey", "-in", str(key), "-aes256", "-passout", "pass:pw", "-out", str(other))
    else:
        _openssl("genpkey", "-algorithm", "RSA", "-out", str(other))
    path = tmp_path / "tls.toml"
    path.write_text(f'[server]\nport = 0\n[server.tls]\ncert_file = "{cert}"\n'
                    f'key_file = "{other}"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pusherd", "--config", str(path), cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2, stderr
    message = stderr.decode()
    assert "config error: server.tls.key_file" in message and str(other) in message
    assert "pass phrase" not in message.lower() and LISTENING.encode() not in stdout
    if problem == "passphrase":
        assert "passphrase" in message
    else:
        assert "server.tls.cert_file" in message and "not the key" in message


def test_reverbs_passphrase_option_is_refused_naming_it(tmp_path: Path) -> None:
    from pusherd.config import load_config
    from pusherd.errors import ConfigError

    path = tmp_path / "tls.toml"
    path.write_text('[server.tls]\npassphrase = "pw"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.key == "server.tls.passphrase"
