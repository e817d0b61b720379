"""A webhook receiver for the optional §14 cases: records every POST with its raw headers/body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .framework import CaseFailed, short


@dataclass
class Delivery:
    path: str
    headers: list[tuple[str, str]]  # as sent, original casing
    body: bytes
    received: float

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def events(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.body).get("events", []))
        except (ValueError, AttributeError):
            return []


@dataclass
class WebhookReceiver:
    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "0.0.0.0", self.port)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                lines = head.decode("latin-1").split("\r\n")
                _, path, _ = lines[0].split(" ", 2)
                headers = [(k.strip(), v.strip()) for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)]
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length) if length else b""
                async with self._changed:
                    self.deliveries.append(Delivery(path, headers, body, time.time()))
                    self._changed.notify_all()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def wait_event(self, pred: Callable[[dict[str, Any]], bool], what: str,
                         timeout: float = 15.0) -> tuple[Delivery, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for d in self.deliveries:
                    for ev in d.events():
                        if pred(ev):
                            return d, ev
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e for d in self.deliveries for e in d.events()][-10:]
                    raise CaseFailed(f"webhook {what} not received within {timeout:g}s; "
                                     f"last events: {short(seen)}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
