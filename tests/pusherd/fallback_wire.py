"""A raw client of the HTTP fallback transports (spec §15.2), for the server tests.

Requests are written by hand over asyncio streams so the tests see every byte: the
response head, each ``o``/``a``/``h``/``c`` line. Nothing sleeps: every read has a bound.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.pusherd.wire import APP, TIMEOUT

QUERY = "protocol=7&client=js&version=8.6.0"


def new_session_path() -> str:
    """A session path as pusher-js makes one: a number < 1000 and 8 chars of [0-9a-v]."""
    alphabet = "0123456789abcdefghijklmnopqrstuv"
    return f"{secrets.randbelow(1000)}/" + "".join(secrets.choice(alphabet) for _ in range(8))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def _request(method: str, port: int, target: str, body: bytes,
             headers: dict[str, str] | None) -> bytes:
    all_headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json",
                   "Content-Length": str(len(body)), "Origin": "http://page.test",
                   **(headers or {})}
    return (f"{method} {target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n").encode() + body


async def request(port: int, method: str, target: str, body: bytes = b"",
                  headers: dict[str, str] | None = None,
                  local_host: str = "127.0.0.1") -> Response:
    """One whole request/response on a fresh connection (Content-Length bodies)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(local_host, 0))
    try:
        writer.write(_request(method, port, target, body, headers))
        status, response_headers = await _read_head(reader)
        length = int(response_headers.get("content-length", "0"))
        data = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
        return Response(status, response_headers, data)
    finally:
        writer.close()


def url(session: str, kind: str, key: str = APP.key, prefix: str = "/pusher",
        query: str = QUERY) -> str:
    return f"{prefix}/app/{key}/{session}/{kind}" + (f"?{query}" if query else "")


async def send(port: int, session: str, messages: list[Any] | None = None, *,
               body: bytes | None = None, key: str = APP.key,
               local_host: str = "127.0.0.1", origin: str = "http://page.test") -> Response:
    """``xhr_send``: `messages` (frames as dicts, JSON-encoded into strings) or a raw body."""
    if body is None:
        body = json.dumps([json.dumps(m) for m in messages or []]).encode()
    return await request(port, "POST", url(session, "xhr_send", key, query="t=1&n=1"), body,
                         {"Origin": origin}, local_host=local_host)


async def poll(port: int, session: str, key: str = APP.key) -> Response:
    """One ``xhr`` poll, answered whole."""
    return await request(port, "POST", url(session, "xhr", key), b"")


def frames_of(lines: list[bytes]) -> list[dict[str, Any]]:
    """The Pusher frames carried by ``a[…]`` lines."""
    out = []
    for line in lines:
        if line.startswith(b"a"):
            out.extend(json.loads(m) for m in json.loads(line[1:]))
    return out


@dataclass
class Stream:
    """One ``xhr_streaming`` receive request, read line by line."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    read_bytes: int = 0
    lines: list[bytes] = field(default_factory=list)
    _pending: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def open(cls, port: int, session: str, key: str = APP.key,
                   query: str = QUERY, origin: str = "http://page.test") -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        writer.write(_request("POST", port, url(session, "xhr_streaming", key, query=query),
                              b"", {"Origin": origin}))
        status, headers = await _read_head(reader)
        return cls(reader, writer, status, headers)

    async def line(self, timeout: float = TIMEOUT) -> bytes:
        """The next line (without its newline); b"" at the end of the response."""
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        self.read_bytes += len(data)
        line = data.rstrip(b"\n")
        if data:
            self.lines.append(line)
        return line

    async def frame(self, timeout: float = TIMEOUT, skip_heartbeats: bool = True
                    ) -> dict[str, Any]:
        """The next Pusher frame; ``a`` lines with several messages are split."""
        while True:
            if self._pending:
                return self._pending.pop(0)
            line = await self.line(timeout)
            if line == b"h" and skip_heartbeats:
                continue
            if not line.startswith(b"a"):
                raise AssertionError(f"expected an a[...] line, got {line[:200]!r}")
            self._pending = frames_of([line])

    async def expect(self, event: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Skip frames until one with `event` arrives."""
        while True:
            frame = await self.frame(timeout)
            if frame.get("event") == event:
                return frame

    async def handshake(self) -> str:
        """Read ``o`` then connection_established; return the socket id."""
        assert self.status == 200, self.status
        assert await self.line() == b"o"
        frame = await self.frame()
        assert frame["event"] == "pusher:connection_established", frame
        return str(json.loads(frame["data"])["socket_id"])

    def abort(self) -> None:
        self.writer.transport.abort()
