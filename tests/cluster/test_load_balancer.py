"""The load-balancer recipes of the docs, run as they are in front of two pusherd nodes.

docs/operations.md's nginx block and docs/scaling.md's HAProxy block are read from the
docs, given a local listen address and the two nodes' ports (nothing else changes), and
started as real nginx / haproxy processes. Through them: a WebSocket client and an HTTP
API trigger (any node), and HTTP fallback (``xhr_streaming``) sessions, every request of
one session reaching the node that opened it while sessions spread over both nodes. Each
test is skipped, saying so, when its binary is not installed (Debian: ``nginx-light``,
``haproxy``).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cluster.nodes import run_cluster
from tests.cluster.waiting import wait_until
from tests.pusherd.fallback_wire import Stream, send
from tests.pusherd.wire import Client, call, sdk
from tests.support.pusherd_process import REPO_ROOT, PusherdProcess
from tests.support.redis_server import SHARED_REDIS_URL, free_port

DOC_NODES = ("10.0.0.11:8080", "10.0.0.12:8080")


def doc_block(doc: str, heading: str, language: str) -> str:
    """The first ```language block after `heading` in docs/`doc`, dedented."""
    text = (REPO_ROOT / "docs" / doc).read_text()
    after = text[text.index(heading):]
    match = re.search(rf"^( *)```{language}\n(.*?)^\1```", after, re.S | re.M)
    assert match is not None, f"no {language} block after {heading!r} in {doc}"
    return textwrap.dedent(match.group(2))


def _with_nodes(block: str, nodes: list[PusherdProcess]) -> str:
    for placeholder, node in zip(DOC_NODES, nodes, strict=True):
        assert placeholder in block
        block = block.replace(placeholder, f"127.0.0.1:{node.port}")
    return block


def nginx_config(workdir: Path, port: int, nodes: list[PusherdProcess]) -> str:
    block = doc_block("operations.md", "## Behind nginx", "nginx")
    block = block.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port};")
    block = "\n".join(line for line in block.splitlines() if "ssl_certificate" not in line)
    temp = "\n".join(f"    {name}_temp_path {workdir / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} warn;\ndaemon off;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log off;\n{temp}\n{_with_nodes(block, nodes)}\n}}\n")


def haproxy_config(workdir: Path, port: int, nodes: list[PusherdProcess]) -> str:
    block = doc_block("scaling.md", "Sticky routing by session path", "haproxy")
    assert "bind :443 ssl crt /etc/haproxy/certs/ws.example.com.pem" in block
    block = block.replace("bind :443 ssl crt /etc/haproxy/certs/ws.example.com.pem",
                          f"bind 127.0.0.1:{port}")
    return _with_nodes(block, nodes)


@contextmanager
def run_proxy(binary: str, make_config: Callable[[Path, int, list[PusherdProcess]], str],
              nodes: list[PusherdProcess]) -> Iterator[int]:
    """Start `binary` with the config `make_config` writes; yield its port once it
    forwards requests (a /up through it answers 200); stop it after."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install "
                    f"{'nginx-light' if binary == 'nginx' else binary}): the docs' "
                    f"{binary} recipe is not run")
    with tempfile.TemporaryDirectory(prefix=f"pusherd-{binary}-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx's workers may run as another user
        port = free_port()
        config = workdir / f"{binary}.conf"
        config.write_text(make_config(workdir, port, nodes))
        if binary == "nginx":
            args = [path, "-p", str(workdir), "-c", str(config)]
            check = [path, "-t", "-p", str(workdir), "-c", str(config)]
        else:
            args = [path, "-db", "-f", str(config)]
            check = [path, "-c", "-f", str(config)]
        checked = subprocess.run(check, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Nothing announces that the proxy listens and forwards: the request is the
            # event (as PrivateRedis.wait_ready's PING), bounded.
            deadline = time.monotonic() + 30
            while not _forwards(port):
                assert process.poll() is None, f"{binary} exited ({process.returncode})"
                assert time.monotonic() < deadline, f"{binary} did not forward within 30 s"
                time.sleep(0.02)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def open_stream(port: int, session: str) -> Stream:
    """An ``xhr_streaming`` receive request through a proxy. A proxy may send the stream
    chunked (nginx does, as HTTP/1.1 allows; the browser undoes it): the chunks are
    undone here, so the lines read are the ones pusherd sent."""
    stream = await Stream.open(port, session)
    if stream.headers.get("transfer-encoding", "").lower() == "chunked":
        raw, body = stream.reader, asyncio.StreamReader(limit=1 << 22)

        async def dechunk() -> None:
            while True:
                size = int((await raw.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    body.feed_eof()
                    return
                body.feed_data(await raw.readexactly(size))
                await raw.readexactly(2)  # the CRLF after each chunk

        _dechunkers.add(asyncio.create_task(dechunk()))
        stream.reader = body
    return stream


_dechunkers: set[asyncio.Task[None]] = set()


def _forwards(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=5) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, ConnectionError):
        return False


async def _through(port: int, nodes: list[PusherdProcess]) -> None:
    # WebSocket and the HTTP API through the balancer, whichever node they reach.
    client = await Client.open(port)
    await client.subscribe_ok("news")
    # Fallback sessions: the same {server} segment for all, so that only the {session}
    # segment can spread them (a hash that ignored it would put all on one node).
    streams: list[Stream] = []
    holders: list[int] = []
    while len(streams) < 4 or len(set(holders)) < 2:
        assert len(streams) < 40, f"40 sessions, all on node {holders[0]}: not spread"
        session = "123/" + "".join(secrets.choice("0123456789abcdefghijklmnopqrstuv")
                                   for _ in range(8))
        stream = await open_stream(port, session)
        socket_id = await stream.handshake()
        streams.append(stream)

        def holder(socket_id: str = socket_id) -> int | None:
            return next((i for i, n in enumerate(nodes) if socket_id in "".join(n.output)),
                        None)

        await wait_until(lambda: holder() is not None, bound=30,
                         what="the session's node logging it")
        holders.append(holder() or 0)
        # Its xhr_send reaches the node that holds it (elsewhere: 404 No such session).
        sent = await send(port, session, [{"event": "pusher:subscribe",
                                           "data": {"channel": "news"}}])
        assert sent.status == 204, (sent.status, sent.body)
        await stream.expect("pusher_internal:subscription_succeeded")
    await call(sdk(port).trigger, "news", "hello", {"n": 1})
    assert json.loads((await client.expect("hello", "news"))["data"]) == {"n": 1}
    for stream in streams:
        assert json.loads((await stream.expect("hello"))["data"]) == {"n": 1}
        stream.abort()
    await client.close()
    for task in _dechunkers:
        task.cancel()
    _dechunkers.clear()


async def test_the_nginx_recipe_keeps_fallback_sessions_on_their_node(
        redis_prefix: str) -> None:
    with run_cluster(2, SHARED_REDIS_URL, redis_prefix) as nodes, \
            run_proxy("nginx", nginx_config, nodes) as port:
        await _through(port, nodes)


async def test_the_haproxy_recipe_keeps_fallback_sessions_on_their_node(
        redis_prefix: str) -> None:
    with run_cluster(2, SHARED_REDIS_URL, redis_prefix) as nodes, \
            run_proxy("haproxy", haproxy_config, nodes) as port:
        await _through(port, nodes)
