"""A real webhook receiver for tests: an HTTP/1.1 server on 127.0.0.1 port 0.

It records every request with its headers as sent (original casing and order) and its raw
body, and answers each with the status its `answer` policy gives (200 by default); it can
also hold requests unanswered until released (a hanging receiver). Waits are bounded and
event-driven (an :class:`asyncio.Condition`), never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One request as it arrived, and the status it was answered with."""

    path: str
    headers: list[tuple[str, str]]
    body: bytes
    received: float
    status: int = 0

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def payload(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.payload["events"])


@dataclass
class WebhookReceiver:
    """Start with :meth:`start`; `answer(request_number)` -> status (1-based)."""

    answer: Callable[[int], int] = lambda n: 200
    hold: bool = False  # keep requests unanswered until :meth:`release`
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def release(self) -> None:
        self.hold = False
        self._released.set()

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _, path, _ = lines[0].split(" ", 2)
                headers = [(k.strip(), v.strip()) for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)]
                length = int(next((v for k, v in headers if k.lower() == "content-length"),
                                  "0"))
                body = await reader.readexactly(length) if length else b""
                request = Request(path, headers, body, time.time())
                async with self._changed:
                    self.requests.append(request)
                    request.status = self.answer(len(self.requests))
                    self._changed.notify_all()
                if self.hold:
                    await self._released.wait()
                writer.write(f"HTTP/1.1 {request.status} X\r\nContent-Length: 0\r\n\r\n"
                             .encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError,
                asyncio.CancelledError):
            pass  # the client left, or the test ended while a request was held
        finally:
            self._writers.discard(writer)
            writer.close()

    # --- waiting ------------------------------------------------------------------------

    def accepted_events(self) -> list[dict[str, Any]]:
        """Events of the requests answered 2xx, in arrival order."""
        return [e for r in self.requests if 200 <= r.status < 300 for e in r.events]

    async def wait_for(self, predicate: Callable[[WebhookReceiver], bool], what: str,
                       timeout: float = 10.0) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)),
                                       timeout)
            except TimeoutError:
                seen = [e for r in self.requests for e in r.events]
                raise AssertionError(f"webhook receiver: {what} not seen within {timeout} s; "
                                     f"events so far: {seen}") from None

    def unique_events(self) -> list[dict[str, Any]]:
        """Accepted events, the first of each id only (what a receiver that drops
        duplicates by id keeps; delivery is at-least-once)."""
        seen: dict[str, dict[str, Any]] = {}
        for event in self.accepted_events():
            seen.setdefault(event["id"], event)
        return list(seen.values())

    async def wait_unique(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` distinct event ids were accepted; return them (first copies)."""
        await self.wait_for(lambda r: len(r.unique_events()) >= count,
                            f"{count} distinct accepted event(s)", timeout)
        return self.unique_events()

    async def wait_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` events were accepted (2xx); return the accepted events."""
        await self.wait_for(lambda r: len(r.accepted_events()) >= count,
                            f"{count} accepted event(s)", timeout)
        return self.accepted_events()
