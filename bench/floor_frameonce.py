"""Floor server, variant (B): a bare frame-once Pusher server (asyncio + uvloop).

The least a Pusher-compatible server can do on the hot path, so that pusherd's figures can
be read as a ratio of it: HTTP/1.1 (httptools, keep-alive) and WebSocket on one port, the
WebSocket frames parsed by `websockets`' Sans-I/O protocol, a trigger's frame encoded once
and written synchronously with ``transport.write`` to every subscriber, each socket's
outbound buffer capped (a socket over the cap is aborted, never buffered without bound).

Features: only what the load generator needs — ``pusher:connection_established``,
``pusher:subscribe`` / ``subscription_succeeded``, ``pusher:ping``/``pong``,
``POST /apps/{id}/events`` (signature verified only with ``--verify``), ``GET /up``.

Run: ``python -m bench.floor_frameonce --port 0`` prints
``floor listening on http://127.0.0.1:PORT`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import resource
import secrets
import signal
import socket
import struct
import sys

import httptools
import orjson
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.utils import accept_key

_LINGER_ZERO = struct.pack("ii", 1, 0)
_RESPONSE_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Hub:
    """Channels and their subscribers; the frame-once broadcast."""

    def __init__(self, app_id: str, key: str, secret: str, verify: bool, cap: int) -> None:
        self.app_id = app_id
        self.key = key
        self.secret = secret.encode()
        self.keyed = hmac.new(self.secret, digestmod=hashlib.sha256)
        self.verify = verify
        self.cap = cap
        self.channels: dict[str, set[Connection]] = {}
        self.events_path = f"/apps/{app_id}/events".encode()
        self.cut_off = 0

    def broadcast(self, channel: str, name: str, data: str) -> None:
        subscribers = self.channels.get(channel)
        if not subscribers:
            return
        payload = orjson.dumps({"event": name, "channel": channel, "data": data})
        frame = Frame(Opcode.TEXT, payload).serialize(mask=False)
        cap = self.cap
        over: list[Connection] = []
        for conn in subscribers:
            transport = conn.transport
            if transport.get_write_buffer_size() > cap:
                over.append(conn)
            else:
                transport.write(frame)
        for conn in over:
            self.cut_off += 1
            conn.abort()

    def check_signature(self, path: bytes, query: bytes, body: bytes) -> bool:
        """The least a verifying server does (spec §13.3), as lean as Python allows: split
        the query (no percent-decoding: the load generator sends none), check the key and
        the body's MD5, HMAC the sorted pairs with a pre-keyed HMAC. No timestamp window,
        no duplicate or upper-case keys: a lower bound of any real check's cost."""
        params = dict(part.partition("=")[::2] for part in query.decode().split("&") if part)
        signature = params.pop("auth_signature", "")
        if params.get("auth_key") != self.key:
            return False
        if body and params.get("body_md5") != hashlib.md5(body).hexdigest():
            return False
        signed = "&".join([f"{k}={v}" for k, v in sorted(params.items())])
        mac = self.keyed.copy()
        mac.update(f"POST\n{path.decode()}\n{signed}".encode())
        return hmac.compare_digest(mac.hexdigest(), signature)


class Connection(asyncio.Protocol):
    """One TCP connection: HTTP requests until an upgrade, then WebSocket frames."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.ws: Protocol | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.subscribed: set[str] = set()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws_received(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self.upgrade(data[offset:])
        except httptools.HttpParserError:
            self.transport.write(_response(400, b'{"error":"bad request"}'))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for channel in self.subscribed:
            subscribers = self.hub.channels.get(channel)
            if subscribers is not None:
                subscribers.discard(self)
                if not subscribers:
                    del self.hub.channels[channel]
        self.subscribed.clear()

    def abort(self) -> None:
        # Linger 0: the kernel resets the connection and frees its send queue at once,
        # instead of keeping the unsent bytes of an orphaned FIN-WAIT-1 socket.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.transport.abort()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():
            return  # handled by the HttpParserUpgrade exception
        path, _, query = self.url.partition(b"?")
        method = self.parser.get_method()
        if method == b"POST" and path == self.hub.events_path:
            self.transport.write(self.trigger(path, query, b"".join(self.body)))
        elif path == b"/up":
            self.transport.write(_RESPONSE_OK)
        else:
            self.transport.write(_response(404, b'{"error":"not found"}'))
        if not self.parser.should_keep_alive():
            self.transport.close()

    def trigger(self, path: bytes, query: bytes, body: bytes) -> bytes:
        if self.hub.verify and not self.hub.check_signature(path, query, body):
            return _response(401, b'{"error":"invalid signature"}')
        try:
            message = orjson.loads(body)
            name = message["name"]
            data = message["data"]
            channels = message.get("channels") or [message["channel"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _response(400, b'{"error":"bad event"}')
        for channel in channels:
            self.hub.broadcast(channel, name, data)
        return _RESPONSE_OK

    # WebSocket
    def upgrade(self, rest: bytes) -> None:
        path = self.url.partition(b"?")[0]
        key = self.headers.get(b"sec-websocket-key")
        if not path.startswith(b"/app/") or key is None:
            self.transport.write(_response(404, b'{"error":"not found"}'))
            self.transport.close()
            return
        if path[5:].decode() != self.hub.key:
            self.transport.write(_response(404, b'{"error":"unknown app"}'))
            self.transport.close()
            return
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n"
        )
        self.ws = Protocol(Side.SERVER, state=State.OPEN, max_size=65536)
        socket_id = f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}"
        established = orjson.dumps(
            {
                "event": "pusher:connection_established",
                "data": orjson.dumps({"socket_id": socket_id, "activity_timeout": 120}).decode(),
            }
        )
        self.ws.send_text(established)
        self.flush()
        if rest:
            self.ws_received(rest)

    def ws_received(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        ws.receive_data(data)
        for frame in ws.events_received():
            if frame.opcode is Opcode.TEXT:
                self.on_text(frame.data)
        self.flush()
        if ws.state is State.CLOSED or ws.close_expected():
            self.transport.close()

    def flush(self) -> None:
        assert self.ws is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)

    def on_text(self, raw: bytes) -> None:
        assert self.ws is not None
        try:
            message = orjson.loads(raw)
            event = message["event"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if event == "pusher:subscribe":
            data = message.get("data")
            if isinstance(data, str):
                data = orjson.loads(data)
            channel = data["channel"]
            self.hub.channels.setdefault(channel, set()).add(self)
            self.subscribed.add(channel)
            self.ws.send_text(
                orjson.dumps(
                    {
                        "event": "pusher_internal:subscription_succeeded",
                        "channel": channel,
                        "data": "{}",
                    }
                )
            )
        elif event == "pusher:ping":
            self.ws.send_text(b'{"event":"pusher:pong","data":{}}')


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(args: argparse.Namespace) -> None:
    hub = Hub(args.app_id, args.app_key, args.app_secret, args.verify, args.buffer_cap)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(hub), args.host, args.port, backlog=4096, reuse_address=True
    )
    host, port = server.sockets[0].getsockname()[:2]
    print(f"floor listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-id", default=os.environ.get("PUSHERD_APP_ID", "1001"))
    parser.add_argument("--app-key", default=os.environ.get("PUSHERD_APP_KEY", "app-key"))
    parser.add_argument("--app-secret", default=os.environ.get("PUSHERD_APP_SECRET", "app-secret"))
    parser.add_argument("--verify", action="store_true", help="verify HTTP API signatures")
    parser.add_argument(
        "--buffer-cap", type=int, default=1 << 20, help="outbound bytes per socket before abort"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_open_file_limit()
    import uvloop

    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
