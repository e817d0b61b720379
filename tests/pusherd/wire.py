"""Real clients for the server tests: a WebSocket client, a raw signed HTTP client, a raw
socket WebSocket client, and the official Python SDK.

Nothing here sleeps: every wait is a read with a timeout. Signatures for hand-made HTTP
requests are computed with :mod:`hmac` directly, not with pusherd's own signer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pusher
import websockets
from websockets.asyncio.client import ClientConnection, connect

TIMEOUT = 5.0
DEFAULT_QUERY = "protocol=7&client=js&version=8.6.0&flash=false"


@dataclass(frozen=True)
class AppCredentials:
    id: str
    key: str
    secret: str


APP = AppCredentials("1001", "app-key", "app-secret")
OTHER_APP = AppCredentials("1002", "other-key", "other-secret")


# --- WebSocket client ------------------------------------------------------------------


class Client:
    """One pusher-protocol WebSocket connection (the websockets asyncio client)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.socket_id = ""
        self.activity_timeout = 0
        self.established: dict[str, Any] = {}

    @classmethod
    async def open(
        cls,
        port: int,
        key: str = APP.key,
        *,
        query: str | None = DEFAULT_QUERY,
        origin: str | None = None,
        handshake: bool = True,
        max_size: int | None = 1 << 20,
    ) -> Client:
        url = f"ws://127.0.0.1:{port}/app/{key}" + (f"?{query}" if query is not None else "")
        ws = await connect(
            url, origin=origin, proxy=None, ping_interval=None, compression=None,
            open_timeout=TIMEOUT, close_timeout=2, max_size=max_size, max_queue=None,
        )  # type: ignore[arg-type]
        client = cls(ws)
        if handshake:
            frame = await client.recv()
            assert frame["event"] == "pusher:connection_established", frame
            assert isinstance(frame["data"], str), "handshake data must be string-data (§1.3)"
            data = json.loads(frame["data"])
            client.socket_id = data["socket_id"]
            client.activity_timeout = data["activity_timeout"]
            client.established = frame
        return client

    async def recv_raw(self, timeout: float = TIMEOUT) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await self.recv_raw(timeout)
        frame = json.loads(raw)
        assert isinstance(frame, dict), raw
        return frame

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.send(frame)

    async def expect(self, event: str, channel: str | None = None,
                     timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert frame.get("event") == event, f"expected {event}, got {frame}"
        if channel is not None:
            assert frame.get("channel") == channel, f"expected channel {channel}, got {frame}"
        return frame

    async def barrier(self) -> list[dict[str, Any]]:
        """Send ``pusher:ping`` and return every frame that arrived before the pong.

        The server writes to a socket in order, so frames it sent before answering this
        ping are exactly what this returns: an empty list proves nothing was pending.
        """
        await self.send({"event": "pusher:ping", "data": {}})
        before: list[dict[str, Any]] = []
        while True:
            frame = await self.recv()
            if frame.get("event") == "pusher:pong":
                return before
            before.append(frame)

    async def subscribe(self, channel: str, auth: str | None = "",
                        channel_data: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send({"event": "pusher:subscribe", "data": data})
        return await self.recv()

    async def subscribe_ok(self, channel: str, auth: str | None = "",
                           channel_data: str | None = None) -> dict[str, Any]:
        frame = await self.subscribe(channel, auth, channel_data)
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame
        assert frame["channel"] == channel
        assert isinstance(frame["data"], str)
        return frame

    async def unsubscribe(self, channel: str) -> None:
        await self.send({"event": "pusher:unsubscribe", "data": {"channel": channel}})

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, list[Any]]:
        """Read until the server closes; return (close code, frames read meanwhile)."""
        frames: list[Any] = []

        async def drain() -> None:
            try:
                while True:
                    raw = await self.ws.recv()
                    frames.append(json.loads(raw) if isinstance(raw, str) else raw)
            except websockets.ConnectionClosed:
                return

        await asyncio.wait_for(drain(), timeout)
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, frames

    async def close(self) -> None:
        await self.ws.close()


def error_code(frame: dict[str, Any]) -> Any:
    assert frame["event"] == "pusher:error", frame
    assert isinstance(frame["data"], dict), "pusher:error data is an object (§2)"
    assert isinstance(frame["data"].get("message"), str)
    return frame["data"]["code"]


# --- channel and user auth, as a backend would sign them -------------------------------


def _hmac_hex(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def channel_auth(socket_id: str, channel: str, channel_data: str | None = None,
                 app: AppCredentials = APP, secret: str | None = None) -> str:
    text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    return f"{app.key}:{_hmac_hex(secret or app.secret, text)}"


def user_auth(socket_id: str, user_data: str, app: AppCredentials = APP,
              secret: str | None = None) -> str:
    return f"{app.key}:{_hmac_hex(secret or app.secret, f'{socket_id}::user::{user_data}')}"


# --- the official SDK ------------------------------------------------------------------


def sdk(port: int, app: AppCredentials = APP, **options: Any) -> pusher.Pusher:
    client = pusher.Pusher(app_id=app.id, key=app.key, secret=app.secret, host="127.0.0.1",
                           port=port, ssl=False, **options)
    return client


async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous SDK call off the event loop the in-process server runs on."""
    return await asyncio.to_thread(function, *args, **kwargs)


# --- raw HTTP --------------------------------------------------------------------------


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def signed_query(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    app: AppCredentials = APP,
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
    secret: str | None = None,
    body_md5: bool | None = None,
) -> str:
    """The query string of a request signed as §13.2 says (values left unescaped in the
    string to sign, escaped on the wire)."""
    query = dict(params or {})
    query.update({"auth_key": app.key, "auth_timestamp": str(timestamp or int(time.time())),
                  "auth_version": "1.0"})
    if body_md5 if body_md5 is not None else bool(body):
        query["body_md5"] = hashlib.md5(body).hexdigest()
    text = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    query["auth_signature"] = _hmac_hex(secret or app.secret, f"{method}\n{path}\n{text}")
    return urlencode(query, quote_via=quote, safe=",")


async def http_request(
    port: int, method: str, target: str, body: bytes = b"",
    headers: dict[str, str] | None = None, timeout: float = TIMEOUT,
) -> HttpReply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                f"Content-Length: {len(body)}"]
        if body:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return await asyncio.wait_for(read_http_reply(reader), timeout)
    finally:
        writer.close()


async def read_http_reply(reader: asyncio.StreamReader) -> HttpReply:
    status_line = await reader.readline()
    parts = status_line.decode("latin-1").split(" ", 2)
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), status_line
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return HttpReply(int(parts[1]), headers, body)


async def signed_request(
    port: int, method: str, path: str, body: bytes = b"", *, app: AppCredentials = APP,
    params: dict[str, str] | None = None, **signing: Any,
) -> HttpReply:
    query = signed_query(method, path, body, app=app, params=params, **signing)
    return await http_request(port, method, f"{path}?{query}", body)


async def trigger_raw(port: int, payload: dict[str, Any], app: AppCredentials = APP
                      ) -> HttpReply:
    return await signed_request(port, "POST", f"/apps/{app.id}/events",
                                json.dumps(payload).encode(), app=app)


# --- raw-socket WebSocket client (for frames the websockets client will not send) -------


class RawWebSocket:
    """A minimal RFC 6455 client on an asyncio stream: sends any frame, masked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, key: str = APP.key, *, receive_buffer: int | None = None,
                   stream_limit: int = 1 << 16) -> tuple[RawWebSocket, dict[str, Any]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=stream_limit)
        nonce = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /app/{key}?{DEFAULT_QUERY} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert b" 101 " in status, status
        while (await asyncio.wait_for(reader.readline(), TIMEOUT)) not in (b"\r\n", b""):
            pass
        raw = cls(reader, writer)
        opcode, payload = await raw.read_frame()
        assert opcode == 0x1
        return raw, json.loads(payload)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.writer.write(self.frame(opcode, payload, fin))

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
        """One masked client frame (RFC 6455 §5.2), for sending several in one write."""
        mask = os.urandom(4)
        first = (0x80 if fin else 0) | opcode
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", first, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    def send_text(self, payload: bytes | str) -> None:
        self.send_frame(0x1, payload.encode() if isinstance(payload, str) else payload)

    async def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        async def read() -> tuple[int, bytes]:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(length)

        return await asyncio.wait_for(read(), timeout)

    async def read_json(self) -> dict[str, Any]:
        opcode, payload = await self.read_frame()
        assert opcode == 0x1, (opcode, payload)
        frame = json.loads(payload)
        assert isinstance(frame, dict)
        return frame

    async def read_close_code(self) -> tuple[int | None, list[bytes]]:
        """Read frames until a close frame; return its code and the text frames before it."""
        texts: list[bytes] = []
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None,
                        texts)
            if opcode == 0x1:
                texts.append(payload)

    def close(self) -> None:
        self.writer.close()
