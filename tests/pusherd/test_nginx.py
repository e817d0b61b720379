"""The nginx block of docs/operations.md, run for real in front of a pusherd process.

The block is taken from the docs as written; only what cannot run here is replaced: the
TLS ``listen`` and certificate lines by a plain ``listen`` on a free port, and the
upstreams' two node addresses by pusherd's. The surrounding ``http`` context turns gzip on for the
fallback transports' content type, as a typical site config does, so the block's own
``gzip off`` is what keeps the stream uncompressed. Real clients go through it: a
WebSocket client, the Python SDK (``trigger``, ``channels_info``,
``terminate_user_connections``, whose path is ``/users/{id}/terminate_connections``), an
``xhr_streaming`` session (chunked by nginx, read with httpx as a browser would) and the
health paths. Skipped, saying so, where no nginx binary is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.pusherd.conftest import DEFAULT_TOML
from tests.pusherd.fallback_wire import QUERY, new_session_path
from tests.pusherd.wire import TIMEOUT, Client, call, error_code, sdk, user_auth
from tests.support.pusherd_process import REPO_ROOT, run_pusherd

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="no nginx binary: install nginx-light to run the docs' nginx block")

ORIGIN = "http://page.test"


def documented_block(upstream_port: int, listen_port: int) -> str:
    """docs/operations.md's nginx block, made runnable here (see the module docstring)."""
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"## Behind nginx.*?```nginx\n(.*?)```", text, re.S)
    assert block is not None, "no nginx block under '## Behind nginx'"
    config = block.group(1)
    # The block lists two nodes (10.0.0.11 and .12) in each upstream: both are this one
    # pusherd here (tests/cluster/test_load_balancer.py runs it over two nodes).
    for old, new in (("listen 443 ssl http2;", f"listen 127.0.0.1:{listen_port};"),
                     ("server 10.0.0.11:8080;", f"server 127.0.0.1:{upstream_port};"),
                     ("server 10.0.0.12:8080;", f"server 127.0.0.1:{upstream_port};")):
        assert old in config, f"the docs' block changed: {old!r} not found"
        config = config.replace(old, new)
    kept = [line for line in config.splitlines() if "ssl_certificate" not in line]
    assert len(kept) == len(config.splitlines()) - 2
    return "\n".join(kept)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_nginx(directory: Path, server_block: str, port: int) -> Iterator[None]:
    """nginx in the foreground with `server_block` in its http context; stopped after."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / name).mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    gzip on;
    gzip_min_length 1;
    gzip_types application/javascript application/json text/plain;
{server_block}
}}
""")
    assert NGINX is not None
    check = subprocess.run([NGINX, "-t", "-p", str(directory), "-c", "nginx.conf"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(directory), "-c", "nginx.conf",
                                "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:  # nginx says nothing when it is listening: wait for the port, bounded
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else b""
                assert time.monotonic() < deadline, "nginx did not open its port"
                time.sleep(0.05)
        yield
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_the_documented_nginx_block_routes_every_client_and_api_path(
    tmp_path: Path,
) -> None:
    toml = DEFAULT_TOML.replace("shutdown_timeout = 1\n", "shutdown_timeout = 1\n"
                                'trusted_proxies = ["127.0.0.1"]\n', 1)
    port = _free_port()
    with run_pusherd(toml) as pusherd, run_nginx(tmp_path, documented_block(pusherd.port, port),
                                                 port):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            # Health through the proxy; metrics and console kept off it.
            for path in ("/up", "/ready", "/health"):
                assert (await http.get(path)).status_code == 200, path
            assert (await http.get("/metrics")).status_code == 403
            assert (await http.get("/console")).status_code == 403

            # A WebSocket client, and the SDK's trigger reaching it.
            client = await Client.open(port)
            await client.subscribe_ok("news")
            pusher = sdk(port)
            await call(pusher.trigger, "news", "headline", {"n": 1})
            await client.expect("headline", "news")
            info = await call(pusher.channels_info)
            assert "news" in info["channels"]

            # An xhr_streaming session: frames arrive while the stream stays open (not
            # buffered), uncompressed although the client accepts gzip.
            session = new_session_path()
            prefix = f"/pusher/app/app-key/{session}"
            headers = {"Origin": ORIGIN, "Content-Type": "application/json"}
            async with http.stream("POST", f"{prefix}/xhr_streaming?{QUERY}",
                                   headers=headers) as stream:
                assert stream.status_code == 200
                assert "gzip" in stream.request.headers["accept-encoding"]
                assert "content-encoding" not in stream.headers
                lines = stream.aiter_lines()

                async def frame() -> dict[str, object]:
                    while True:
                        line = await asyncio.wait_for(anext(lines), TIMEOUT)
                        if line.startswith("a"):
                            return json.loads(json.loads(line[1:])[0])  # type: ignore[no-any-return]

                assert await asyncio.wait_for(anext(lines), TIMEOUT) == "o"
                established = await frame()
                assert established["event"] == "pusher:connection_established"
                subscribe = json.dumps({"event": "pusher:subscribe",
                                        "data": {"channel": "news"}})
                sent = await http.post(f"{prefix}/xhr_send?t=1&n=1",
                                       content=json.dumps([subscribe]), headers=headers)
                assert sent.status_code == 204
                while (await frame())["event"] != "pusher_internal:subscription_succeeded":
                    pass
                await call(pusher.trigger, "news", "headline", {"n": 2})
                while (got := await frame())["event"] != "headline":
                    pass
                assert got["channel"] == "news"
            await client.expect("headline", "news")  # the WebSocket client got it too

            # The Python SDK's terminate path: /users/{id}/terminate_connections.
            user_data = '{"id":"u1"}'
            await client.send({"event": "pusher:signin", "data": {
                "auth": user_auth(client.socket_id, user_data), "user_data": user_data}})
            await client.expect("pusher:signin_success")
            await call(pusher.terminate_user_connections, "u1")
            code, frames = await client.closed()
            assert code == 4009 and [error_code(f) for f in frames] == [4009]

        # Behind the trusted proxy, remote= is nginx's X-Forwarded-For (no port).
        assert pusherd.wait_for_output(f"socket_id={client.socket_id} remote=127.0.0.1 "), \
            [line for line in pusherd.output if "opened" in line]
