"""Start-up as an operator sees it: the port answers while the adapter starts (``/ready``
says ``starting``), ``/health`` is ``/up``, the banner's URLs are usable as printed (TLS,
IPv6), the JSON banner record, the log environment variables, and ``remote=`` behind a
trusted reverse proxy."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pusherd.adapters.memory import MemoryAdapter
from pusherd.config import load_config
from pusherd.server.server import Server
from tests.conformance.tls_proxy import make_certificate
from tests.pusherd.conftest import DEFAULT_TOML, StartServer
from tests.pusherd.wire import TIMEOUT, Client, http_request, signed_query
from tests.support.pusherd_process import REPO_ROOT, run_pusherd


def _upgrade_request(port: int, extra: str = "") -> bytes:
    nonce = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


async def _upgrade_status(port: int, extra: str = "") -> int:
    """Send a WebSocket upgrade; the status of the answer (the socket is then closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_upgrade_request(port, extra))
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return int(line.split()[1])
    finally:
        writer.close()


class HeldAdapter(MemoryAdapter):
    """An in-memory adapter whose start waits until the test lets it finish (as Redis
    that takes its time to answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self) -> None:
        self.entered.set()
        await self.release.wait()


async def test_the_port_answers_while_the_adapter_starts_and_ready_says_starting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pusherd.toml"
    path.write_text(DEFAULT_TOML)
    adapter = HeldAdapter()
    server = Server(load_config(path, {}), adapter)
    starting = asyncio.create_task(server.start())
    try:
        await asyncio.wait_for(adapter.entered.wait(), TIMEOUT)
        port = server.port
        assert port  # bound before the adapter starts
        ready = await http_request(port, "GET", "/ready")
        assert (ready.status, ready.json()) == (503, {"status": "starting"})
        up = await http_request(port, "GET", "/up")
        health = await http_request(port, "GET", "/health")
        assert up.status == 200 and (health.status, health.body) == (up.status, up.body)
        # New clients and API requests wait for the adapter: 503, not a half-started node.
        assert await _upgrade_status(port) == 503
        body = b'{"name":"e","channels":["c"],"data":"d"}'
        query = signed_query("POST", "/apps/1001/events", body)
        trigger = await http_request(port, "POST", f"/apps/1001/events?{query}", body)
        assert trigger.status == 503
        adapter.release.set()
        await asyncio.wait_for(starting, TIMEOUT)
        ready = await http_request(port, "GET", "/ready")
        assert (ready.status, ready.json()) == (200, {"status": "ready"})
        client = await Client.open(port)
        await client.close()
    finally:
        adapter.release.set()
        await asyncio.wait_for(starting, TIMEOUT)
        await server.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _start_without_redis(tmp_path: Path, port: int, stdout: int = subprocess.DEVNULL,
                         stderr: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """pusherd as a cluster node whose Redis is not there: it binds `port` at once and
    waits up to lease_ttl (120 s) for Redis before it is started."""
    nobody = _free_port()  # nothing listens there
    config = tmp_path / "pusherd.toml"
    config.write_text(DEFAULT_TOML.replace("port = 0", f"port = {port}", 1) + (
        f'\n[redis]\nurl = "redis://127.0.0.1:{nobody}/0"\nprefix = "t-startup"\n'
        "lease_ttl = 120\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHERD_", "REVERB_"))}
    return subprocess.Popen([sys.executable, "-m", "pusherd", "--config", str(config)],
                            cwd=REPO_ROOT, env=env, stdout=stdout, stderr=stderr, text=True)


async def _wait_for_port(process: subprocess.Popen[str], port: int) -> None:
    """The port opens as soon as the process is up (long before lease_ttl, 120 s)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert process.poll() is None, "pusherd exited"
            assert time.monotonic() < deadline, "the port did not open"
            await asyncio.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_with_redis_unreachable_at_start_the_port_opens_at_once(tmp_path: Path) -> None:
    port = _free_port()
    process = _start_without_redis(tmp_path, port)
    try:
        await _wait_for_port(process, port)
        ready = await http_request(port, "GET", "/ready")
        assert (ready.status, ready.json()) == (503, {"status": "starting"})
        up = await http_request(port, "GET", "/up")
        health = await http_request(port, "GET", "/health")
        assert (health.status, health.body) == (up.status, up.body)
        assert await _upgrade_status(port) == 503
    finally:
        _stop(process)


async def test_a_stop_signal_while_starting_stops_cleanly_at_once(tmp_path: Path) -> None:
    # A supervisor that sees the port answer may stop the process before it has started
    # (here: still waiting up to 120 s for Redis). That is a clean stop with status 0 and
    # its last line, now: not the default action of SIGTERM, and not a wait for Redis.
    port = _free_port()
    process = _start_without_redis(tmp_path, port, subprocess.PIPE, subprocess.PIPE)
    try:
        await _wait_for_port(process, port)
        ready = await http_request(port, "GET", "/ready")
        assert (ready.status, ready.json()) == (503, {"status": "starting"})
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        _stop(process)
    assert process.returncode == 0, (process.returncode, stdout, stderr)
    assert stdout.rstrip().endswith("pusherd stopped"), stdout
    assert "stop signal during start-up: stopped before serving" in stderr, stderr
    with pytest.raises(OSError):  # the listener is closed
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


async def test_a_stop_signal_during_the_start_up_redis_check_stops_cleanly(
        tmp_path: Path) -> None:
    # A Redis that accepts connections and never answers holds the start-up check (before
    # the port is bound) until its timeout. A stop signal then must not kill the process
    # with the default action: it is a clean stop, status 0.
    connected = asyncio.Event()

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # never answers; returns when pusherd goes away
        writer.close()

    hole = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    hole_port = hole.sockets[0].getsockname()[1]
    config = tmp_path / "pusherd.toml"
    config.write_text(DEFAULT_TOML + (
        f'\n[redis]\nurl = "redis://127.0.0.1:{hole_port}/0"\nprefix = "t-hole"\n'))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHERD_", "REVERB_"))}
    process = subprocess.Popen([sys.executable, "-m", "pusherd", "--config", str(config)],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.wait_for(connected.wait(), 60)  # the check is waiting on Redis now
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        _stop(process)
        hole.close()
    assert process.returncode == 0, (process.returncode, stdout, stderr)
    assert stdout.rstrip().endswith("pusherd stopped"), stdout
    assert "stop signal during start-up" in stderr, stderr


def test_the_first_banner_line_says_https_with_tls(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    toml = DEFAULT_TOML.replace("\n[[apps]]", f'\n[server.tls]\ncert_file = "{cert}"\n'
                                f'key_file = "{key}"\n\n[[apps]]', 1)
    with run_pusherd(toml) as server:
        first = server.output[0].strip()
        assert first == f"pusherd listening on https://127.0.0.1:{server.port}", first
        banner = "".join(server.output)
        assert f"health: https://127.0.0.1:{server.port}/up" in banner
        assert banner.count(f"127.0.0.1:{server.port}") == 2  # the first line and health


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_addresses_are_bracketed_in_every_url_of_the_banner() -> None:
    with run_pusherd(DEFAULT_TOML, host="::1") as server:
        first = server.output[0].strip()
        assert first == f"pusherd listening on http://[::1]:{server.port}", first
        health = next(line for line in server.output if "health:" in line)
        url = health.split("health: ", 1)[1].split(" ", 1)[0]
        assert url == f"http://[::1]:{server.port}/up"
        assert _get(url)[0] == 200  # the printed URL works as printed


def test_log_format_and_level_from_the_environment_and_the_json_banner_record() -> None:
    env = {"PUSHERD_LOG_FORMAT": "json", "PUSHERD_LOG_LEVEL": "warning"}
    with run_pusherd(DEFAULT_TOML, env=env) as server:
        status, _ = _get(f"{server.http_url}/apps/9999/channels")  # a logged 404
        assert status == 404
        assert server.wait_for_output('"api_error"') is not None
    lines = [json.loads(line) for line in server.output]  # stdout and stderr: all JSON
    banner = lines[0]
    assert banner["event"] == "listening" and banner["logger"] == "pusherd.banner"
    assert banner["url"] == f"http://127.0.0.1:{server.port}"
    assert any("/ready" in line for line in banner["banner"])
    assert lines[-1]["event"] == "stopped"
    # warning: the banner and the stop are said, info lines (the drain's) are not.
    assert not any(line["level"] == "info" and line["logger"] != "pusherd.banner"
                   for line in lines)


def test_a_bad_log_variable_is_refused_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHERD_", "REVERB_"))}
    result = subprocess.run([sys.executable, "-m", "pusherd", "--port", "0"], cwd=REPO_ROOT,
                            env={**env, "PUSHERD_LOG_FORMAT": "yaml"}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "PUSHERD_LOG_FORMAT" in result.stderr


TRUSTING = DEFAULT_TOML.replace("shutdown_timeout = 1\n", "shutdown_timeout = 1\n"
                                'trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\n', 1)


async def test_remote_is_the_forwarded_client_when_the_peer_is_a_trusted_proxy(
    start_server: StartServer, caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(TRUSTING)
    caplog.set_level(logging.INFO, logger="pusherd.ws")
    # The client, then two proxies (10.1.2.3 and the peer, both trusted): the client is
    # the rightmost untrusted entry; what the client itself wrote further left is not.
    assert await _upgrade_status(
        server.port, "X-Forwarded-For: 192.0.2.66, 203.0.113.9, 10.1.2.3\r\n") == 101
    assert await _upgrade_status(server.port) == 101  # no header: the peer
    opened = [r for r in caplog.records if getattr(r, "event", "") == "connection_opened"]
    assert [r.remote for r in opened][:1] == ["203.0.113.9"]  # type: ignore[attr-defined]
    assert opened[1].remote.startswith("127.0.0.1:")  # type: ignore[attr-defined]


async def test_forwarded_for_is_ignored_from_a_peer_that_is_not_trusted(
    start_server: StartServer, caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(DEFAULT_TOML)  # the default: no trusted proxy
    caplog.set_level(logging.INFO, logger="pusherd.ws")
    assert await _upgrade_status(server.port, "X-Forwarded-For: 203.0.113.9\r\n") == 101
    opened = [r for r in caplog.records if getattr(r, "event", "") == "connection_opened"]
    assert opened and opened[0].remote.startswith("127.0.0.1:")  # type: ignore[attr-defined]


def test_trusted_proxies_must_be_addresses_or_cidr_blocks(tmp_path: Path) -> None:
    from pusherd.errors import ConfigError

    path = tmp_path / "pusherd.toml"
    path.write_text(DEFAULT_TOML.replace("shutdown_timeout = 1\n", "shutdown_timeout = 1\n"
                                         'trusted_proxies = ["nginx.local"]\n', 1))
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_config(path, {})


def test_the_banner_says_which_apps_send_webhooks(tmp_path: Path) -> None:
    toml = DEFAULT_TOML.replace(
        'enable_user_authentication = true\n',
        'enable_user_authentication = true\n\n[[apps.webhooks]]\n'
        'url = "http://127.0.0.1:9/hook"\n\n[[apps.webhooks]]\n'
        'url = "http://127.0.0.1:9/other"\n', 1)
    with run_pusherd(toml, env={"XDG_STATE_HOME": str(tmp_path)}) as server:
        apps = [line.strip() for line in server.output if line.strip().startswith("app id=")]
    assert apps[0].endswith("webhooks=2"), apps
    assert "webhooks" not in apps[1], apps
