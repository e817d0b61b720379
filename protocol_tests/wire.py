"""Raw protocol clients: a WebSocket client that sees every frame, a silent socket that never
answers anything (not even WebSocket pings), hand-made signatures and a hand-signed HTTP client.

These exist only for what the real client libraries refuse to produce (forged or missing
signatures, stale timestamps, malformed frames, exact frame inspection).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .framework import CaseFailed, NotApplicable, short

SOCKET_ID_RE = re.compile(r"^\d+\.\d+$")
IGNORABLE = {"pusher_internal:subscription_count"}


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


Frame = dict[str, Any]
Predicate = Callable[[Frame], bool]


def is_event(event: str, channel: str | None = None) -> Predicate:
    def match(frame: Frame) -> bool:
        return frame.get("event") == event and (channel is None or frame.get("channel") == channel)

    return match


def data_of(frame: Frame) -> Any:
    """Decode string-data the way pusher-js does (JSON inside a string), else return as is."""
    data = frame.get("data")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


class RawClient:
    """One raw WebSocket connection; frames are queued and consumed with expectations."""

    def __init__(self, ws: ClientConnection, ctx: Any) -> None:
        self.ws = ws
        self.ctx = ctx
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.raw_texts: list[str] = []
        self.handshake: Frame | None = None
        self.socket_id = ""
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_event = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, ctx: Any, *, key: str | None = None, query: str | None = None,
        path: str | None = None, handshake: bool = True,
    ) -> RawClient:
        if getattr(ctx, "transport", "ws") != "ws":
            return await HttpFallbackClient.open(ctx, key=key, query=query, path=path,
                                                 handshake=handshake)
        key = key if key is not None else ctx.app_key
        q = "protocol=7&client=js&version=8.6.0&flash=false" if query is None else query
        url = f"{ctx.ws_base}{path if path is not None else '/app/' + key}"
        if q:
            url += "?" + q
        ws = await connect(url, ssl=ctx.ssl_context, ping_interval=None, open_timeout=10,
                           close_timeout=3, max_size=None, proxy=None)
        client = cls(ws, ctx)
        ctx.track(client)
        if handshake:
            first = await client.next(10)
            if first.get("event") != "pusher:connection_established":
                raise CaseFailed(f"first frame is not connection_established: {short(first)}")
            client.handshake = first
            data = data_of(first)
            client.socket_id = str(data.get("socket_id")) if isinstance(data, dict) else ""
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.queue.put_nowait({"event": "<binary>", "data": message.hex()})
                    continue
                self.raw_texts.append(message)
                try:
                    frame = json.loads(message)
                except ValueError:
                    frame = {"event": "<unparsable>", "data": message}
                if not isinstance(frame, dict):
                    frame = {"event": "<not-an-object>", "data": frame}
                self.queue.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else 1006
            self.close_reason = rcvd.reason if rcvd is not None else ""
            self.closed_event.set()
            self.queue.put_nowait(None)

    # -- sending -----------------------------------------------------------------------------
    async def send(self, frame: Frame | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def send_bytes(self, payload: bytes) -> None:
        await self.ws.send(payload)

    # -- receiving ---------------------------------------------------------------------------
    async def next(self, timeout: float = 5.0, *, skip_ignorable: bool = True) -> Frame:
        """The next frame (skipping ignorable ones); fails on timeout or close."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                # asyncio.timeout, not wait_for: under Python 3.11 a wait_for cancelled just
                # as its inner get() completes swallows the cancellation and the frame with
                # it (a cancelled helper task would eat a frame the case waits for).
                async with asyncio.timeout(max(remaining, 0.001)):
                    frame = await self.queue.get()
            except TimeoutError:
                raise CaseFailed(f"no frame within {timeout:g}s") from None
            if frame is None:
                self.queue.put_nowait(None)
                raise CaseFailed(
                    f"connection closed (code {self.close_code} {self.close_reason!r}) "
                    "while waiting for a frame")
            if skip_ignorable and frame.get("event") in IGNORABLE:
                continue
            return frame

    async def expect(self, pred: Predicate, what: str, timeout: float = 5.0) -> Frame:
        """The very next relevant frame must match ``pred``."""
        frame = await self.next(timeout)
        if not pred(frame):
            raise CaseFailed(f"expected {what}, got {short(frame)}")
        return frame

    async def wait_for(self, pred: Predicate, what: str, timeout: float = 5.0,
                       forbid: Predicate | None = None,
                       include_ignorable: bool = False) -> tuple[Frame, list[Frame]]:
        """Skip frames until one matches; returns it and the frames skipped before it."""
        skipped: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaseFailed(f"{what} not received within {timeout:g}s; "
                                 f"got instead: {short(skipped)}")
            try:
                frame = await self.next(remaining, skip_ignorable=not include_ignorable)
            except CaseFailed as exc:
                raise CaseFailed(f"{what} not received: {exc}; got before: {short(skipped)}") \
                    from None
            if pred(frame):
                return frame, skipped
            if forbid is not None and forbid(frame):
                raise CaseFailed(f"unexpected frame while waiting for {what}: {short(frame)}")
            skipped.append(frame)

    async def sync(self, timeout: float = 5.0, *, include_ignorable: bool = False) -> list[Frame]:
        """Round-trip a ``pusher:ping``; return the frames that arrived before the pong.

        The server handles one connection's frames in order, so anything it meant to send in
        reaction to earlier frames of this connection has been sent before the pong.
        """
        await self.send({"event": "pusher:ping", "data": {}})
        _, before = await self.wait_for(is_event("pusher:pong"), "pusher:pong", timeout,
                                        include_ignorable=include_ignorable)
        return before

    async def closed(self, timeout: float) -> tuple[int | None, str]:
        try:
            await asyncio.wait_for(self.closed_event.wait(), timeout)
        except TimeoutError:
            raise CaseFailed(f"connection not closed within {timeout:g}s") from None
        return self.close_code, self.close_reason

    def pending(self) -> list[Frame]:
        out = []
        while not self.queue.empty():
            f = self.queue.get_nowait()
            if f is None:
                self.queue.put_nowait(None)
                break
            if f.get("event") not in IGNORABLE:
                out.append(f)
        return out

    # -- protocol helpers --------------------------------------------------------------------
    async def subscribe(self, channel: str, *, auth: str | None = None,
                        channel_data: str | None = None, user: tuple[Any, Any] | None = None,
                        expect_ok: bool = True, timeout: float = 5.0) -> Frame | None:
        """Send ``pusher:subscribe``; sign private/presence channels unless ``auth`` is given."""
        if user is not None and channel_data is None:
            member: dict[str, Any] = {"user_id": user[0]}
            if user[1] is not None:
                member["user_info"] = user[1]
            channel_data = json.dumps(member)
        if auth is None:
            auth = self.ctx.auth_for(self.socket_id, channel, channel_data)
        data: dict[str, Any] = {"auth": auth, "channel": channel}
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send({"event": "pusher:subscribe", "data": data})
        if not expect_ok:
            return None
        frame, _ = await self.wait_for(
            is_event("pusher_internal:subscription_succeeded", channel),
            f"subscription_succeeded for {channel}", timeout,
            forbid=lambda f: f.get("event") in ("pusher:error", "pusher:subscription_error"))
        return frame

    async def unsubscribe(self, channel: str) -> None:
        await self.send({"event": "pusher:unsubscribe", "data": {"channel": channel}})

    async def signin(self, user_data: str, *, auth: str | None = None) -> None:
        if auth is None:
            auth = f"{self.ctx.app_key}:" + sign(
                self.ctx.app_secret, f"{self.socket_id}::user::{user_data}")
        await self.send({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()

    @property
    def is_open(self) -> bool:
        return not self.closed_event.is_set()


# ---------------------------------------------------------------------------------------------
# The same client over pusher-js's HTTP fallback transports (§15.2).
# ---------------------------------------------------------------------------------------------
class HttpFallbackClient(RawClient):
    """:class:`RawClient`'s interface over ``xhr_streaming`` or ``xhr_polling``: frames are
    read from ``a[…]`` lines of the receive requests, sent as ``xhr_send`` bodies, and the
    close code comes from the ``c[code,"reason"]`` line (1006 when a response ends without
    one, as pusher-js reports it). A stream is reopened past 256 KB, as pusher-js does."""

    STREAM_LIMIT = 256 * 1024

    def __init__(self, ctx: Any, key: str, query: str, streaming: bool) -> None:
        self.ctx = ctx
        self.queue = asyncio.Queue()
        self.raw_texts = []
        self.handshake = None
        self.socket_id = ""
        self.close_code = None
        self.close_reason = ""
        self.closed_event = asyncio.Event()
        alphabet = "0123456789abcdefghijklmnopqrstuv"
        session = f"{secrets.randbelow(1000)}/" + "".join(
            secrets.choice(alphabet) for _ in range(8))
        self.base = f"{ctx.args.http_path}/app/{quote(key, safe='')}/{session}"
        self.query = query
        self.streaming = streaming
        self.opened = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader = asyncio.create_task(self._receive_loop())

    @classmethod
    async def open(  # type: ignore[override]
        cls, ctx: Any, *, key: str | None = None, query: str | None = None,
        path: str | None = None, handshake: bool = True,
    ) -> HttpFallbackClient:
        if path is not None:
            raise NotApplicable("checks a WebSocket upgrade path; HTTP fallback sessions "
                                "live under httpPath (the fallback.* cases)")
        q = "protocol=7&client=js&version=8.6.0" if query is None else query
        client = cls(ctx, key if key is not None else ctx.app_key, q,
                     ctx.transport == "xhr_streaming")
        ctx.track(client)
        if handshake:
            first = await client.next(10)
            if first.get("event") != "pusher:connection_established":
                raise CaseFailed(f"first frame is not connection_established: {short(first)}")
            client.handshake = first
            data = data_of(first)
            client.socket_id = str(data.get("socket_id")) if isinstance(data, dict) else ""
        return client

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            self.ctx.host, self.ctx.port, ssl=self.ctx.ssl_context, limit=1 << 22,
            server_hostname=self.ctx.host if self.ctx.ssl_context else None)

    def _head(self, target: str, length: int) -> bytes:
        return (f"POST {target} HTTP/1.1\r\nHost: {self.ctx.host}:{self.ctx.port}\r\n"
                "Content-Type: application/json\r\nOrigin: http://protocol-tests.invalid\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()

    def _line(self, line: bytes) -> bool:
        """Handle one received line; False once the session is closed."""
        kind = line[:1]
        if kind == b"o":
            if self.opened:  # pusher-js: "Server lost session"
                self._closed(1006, "Server lost session")
                return False
            self.opened = True
        elif kind == b"a":
            for message in json.loads(line[1:]):
                self.raw_texts.append(message)
                try:
                    frame = json.loads(message)
                except ValueError:
                    frame = {"event": "<unparsable>", "data": message}
                if not isinstance(frame, dict):
                    frame = {"event": "<not-an-object>", "data": frame}
                self.queue.put_nowait(frame)
        elif kind == b"c":
            code, reason = json.loads(line[1:])
            self._closed(code, reason)
            return False
        return True

    def _closed(self, code: int, reason: str) -> None:
        if not self.closed_event.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed_event.set()
            self.queue.put_nowait(None)

    async def _receive_loop(self) -> None:
        kind = "xhr_streaming" if self.streaming else "xhr"
        try:
            while True:
                reader, writer = await self._connect()
                self._writer = writer
                writer.write(self._head(f"{self.base}/{kind}?{self.query}", 0))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                if status != 200:
                    self._closed(1006, f"Connection interrupted ({status})")
                    return
                length = None
                for header in head.split(b"\r\n"):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                body = b""
                if length is not None:  # a poll answer
                    body = await reader.readexactly(length)
                    for line in body.split(b"\n")[:-1]:
                        if not self._line(line):
                            return
                    writer.close()
                    continue  # the next poll
                read = 0
                while True:  # a stream
                    data = await reader.readline()
                    if not data.endswith(b"\n"):
                        self._closed(1006, "Connection interrupted (200)")
                        return
                    read += len(data)
                    if not self._line(data[:-1]):
                        return
                    if data[:1] == b"h":
                        asyncio.create_task(self._post([]))  # as pusher-js answers it
                    if read > self.STREAM_LIMIT:
                        writer.transport.abort()
                        break  # reopen the stream: same session
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._closed(1006, f"receive request failed: {exc}")
        finally:
            self._closed(1006, "client closed")

    async def _post(self, messages: list[str]) -> int:
        body = json.dumps(messages).encode()
        reader, writer = await self._connect()
        try:
            writer.write(self._head(f"{self.base}/xhr_send?t={time.time_ns()}", len(body))
                         + body)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            return int(head.split(b" ", 2)[1])
        finally:
            writer.close()

    async def send(self, frame: Frame | str) -> None:
        if self.closed_event.is_set():
            raise CaseFailed("send on a closed fallback session")
        status = await self._post([frame if isinstance(frame, str) else json.dumps(frame)])
        if status // 100 != 2:
            raise CaseFailed(f"xhr_send answered HTTP {status}")

    async def send_bytes(self, payload: bytes) -> None:
        raise NotApplicable("binary frames do not exist on the HTTP fallback transports "
                            "(xhr_send carries JSON strings)")

    async def close(self) -> None:
        self._reader.cancel()
        if self._writer is not None:
            self._writer.transport.abort()


# ---------------------------------------------------------------------------------------------
# A socket that never answers: no pong to WebSocket pings, no pusher:pong.
# ---------------------------------------------------------------------------------------------
class SilentSocket:
    """A minimal WebSocket client over a raw TCP stream that only ever reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, ctx: Any) -> SilentSocket:
        port = ctx.client_port()
        reader, writer = await asyncio.open_connection(
            ctx.host, port, ssl=ctx.ssl_context,
            server_hostname=ctx.host if ctx.ssl_context else None)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /app/{ctx.app_key}?protocol=7&client=js&version=8.6.0&flash=false HTTP/1.1\r\n"
            f"Host: {ctx.host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        writer.write(request.encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise CaseFailed(f"upgrade refused: {head[:80]!r}")
        sock = cls(reader, writer)
        ctx.track(sock)
        return sock

    async def read_frame(self) -> tuple[int, bytes]:
        """One (opcode, payload); continuation frames are not expected from a server."""
        b0, b1 = await self.reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4) if b1 & 0x80 else b""
        payload = await self.reader.readexactly(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


# ---------------------------------------------------------------------------------------------
# Hand-signed HTTP API requests (§13).
# ---------------------------------------------------------------------------------------------
@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise CaseFailed(f"HTTP {self.status} body is not JSON: {self.body[:200]!r}") \
                from None

    def describe(self) -> str:
        return f"HTTP {self.status} {self.body[:200]!r}"


def string_to_sign(method: str, path: str, params: dict[str, str]) -> str:
    query = "&".join(f"{k.lower()}={v}" for k, v in sorted(
        ((k.lower(), v) for k, v in params.items() if k != "auth_signature")))
    return f"{method.upper()}\n{path}\n{query}"


async def http_raw(ctx: Any, method: str, target: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> HttpResponse:
    reader, writer = await asyncio.open_connection(
        ctx.api_host, ctx.api_port, ssl=ctx.ssl_context,
        server_hostname=ctx.api_host if ctx.ssl_context else None)
    try:
        hdrs = {"Host": f"{ctx.api_host}:{ctx.api_port}", "Connection": "close",
                "Content-Length": str(len(body))}
        if body:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    head_bytes, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    if not lines or len(lines[0].split(" ")) < 2:
        raise CaseFailed(f"malformed HTTP response: {raw[:100]!r}")
    status = int(lines[0].split(" ")[1])
    response_headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        response_headers[k.strip().lower()] = v.strip()
    if response_headers.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return HttpResponse(status, response_headers, rest)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


async def api(
    ctx: Any, method: str, path: str, *, params: dict[str, str] | None = None,
    body: Any = None, key: str | None = None, secret: str | None = None,
    timestamp: int | None = None, body_md5: str | bool | None = None,
    signature: str | None = None, encode_query: Callable[[str], str] | None = None,
    sign_body: bytes | None = None, signed_path: str | None = None,
    path_safe: str = "/-_.@;,=", headers: dict[str, str] | None = None,
    extra_query: str = "",
) -> HttpResponse:
    """A hand-signed HTTP API request.

    ``body`` may be bytes, a str, or a JSON-able object. ``body_md5``: None = add it when there
    is a body, False = never, True = always, a string = send that value. ``sign_body`` signs a
    different body than the one sent (tampering). ``signature`` overrides the signature.
    """
    if body is None:
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body).encode()
    q: dict[str, str] = dict(params or {})
    q["auth_key"] = key if key is not None else ctx.app_key
    q["auth_timestamp"] = str(timestamp if timestamp is not None else int(time.time()))
    q["auth_version"] = "1.0"
    md5_source = sign_body if sign_body is not None else raw
    if body_md5 is None:
        if raw:
            q["body_md5"] = md5_hex(raw)
    elif body_md5 is True:
        q["body_md5"] = md5_hex(raw)
    elif isinstance(body_md5, str):
        q["body_md5"] = body_md5
    if sign_body is not None and "body_md5" in q:
        q["body_md5"] = md5_hex(md5_source)
    q["auth_signature"] = signature if signature is not None else sign(
        secret if secret is not None else ctx.app_secret,
        string_to_sign(method, signed_path or path, q))
    enc = encode_query or (lambda v: quote(v, safe=",:-_.@;="))
    query = "&".join(f"{k}={enc(v)}" for k, v in q.items()) + extra_query
    return await http_raw(ctx, method, f"{quote(path, safe=path_safe)}?{query}", raw, headers)


def split_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80
