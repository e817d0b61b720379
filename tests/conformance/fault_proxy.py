"""A fault-injecting TCP proxy in front of a Pusher server, to prove the suite can fail.

It relays WebSocket connections frame by frame (asking the server for no compression) and
HTTP requests (one per connection), and breaks one behaviour, chosen by ``fault``:

* ``echo-client-events`` — a client's ``client-*`` frame is also sent back to the sender.
* ``close-codes`` — every 4xxx close code from the server becomes 1000.
* ``accept-bad-signatures`` — HTTP 401 answers become 200 ``{}``.
* ``drop-member-removed`` — ``pusher_internal:member_removed`` frames are dropped.
* ``object-handshake`` — ``connection_established`` data is sent as an object, not a string.
* ``grant-refused-subscriptions`` — a refused subscription is turned into a success
  (``pusher:subscription_error`` → ``subscription_succeeded``, the 4009 ``pusher:error`` dropped).
* ``reencode-event-data`` — channel events' string data is re-serialized (indented JSON),
  no longer byte-identical to what the publisher sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct

FAULTS = ("echo-client-events", "close-codes", "accept-bad-signatures", "drop-member-removed",
          "object-handshake", "grant-refused-subscriptions", "reencode-event-data")


def encode_frame(opcode: int, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(first byte, opcode, unmasked payload)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else b""
    payload = await reader.readexactly(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0, b0 & 0x0F, payload


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        self.upstream = (upstream_host, upstream_port)
        self.fault = fault
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_writer = None
        try:
            head = await c_reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            is_ws = any(line.lower().startswith("upgrade:") and "websocket" in line.lower()
                        for line in lines)
            kept = [line for line in lines[1:] if line and not line.lower().startswith(
                ("sec-websocket-extensions:",) + (() if is_ws else ("connection:",)))]
            if not is_ws:
                kept.append("Connection: close")
            head = ("\r\n".join([lines[0], *kept]) + "\r\n\r\n").encode("latin-1")
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
            s_writer.write(head)
            await s_writer.drain()
            if is_ws:
                response = await s_reader.readuntil(b"\r\n\r\n")
                c_writer.write(response)
                await c_writer.drain()
                if b" 101 " not in response.split(b"\r\n", 1)[0]:
                    await self._pipe(s_reader, c_writer)
                    return
                await asyncio.gather(self._client_to_server(c_reader, s_writer, c_writer),
                                     self._server_to_client(s_reader, c_writer))
            else:
                await asyncio.gather(self._pipe(c_reader, s_writer),
                                     self._http_response(s_reader, c_writer))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    async def _http_response(self, s_reader: asyncio.StreamReader,
                             c_writer: asyncio.StreamWriter) -> None:
        head = await s_reader.readuntil(b"\r\n\r\n")
        status_line, _, rest = head.partition(b"\r\n")
        if self.fault == "accept-bad-signatures" and b" 401 " in status_line + b" ":
            c_writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
            await c_writer.drain()
            c_writer.close()
            return
        c_writer.write(status_line + b"\r\n" + rest)
        await self._pipe(s_reader, c_writer)

    async def _client_to_server(self, c_reader: asyncio.StreamReader,
                                s_writer: asyncio.StreamWriter,
                                c_writer: asyncio.StreamWriter) -> None:
        while True:
            b0, opcode, payload = await read_frame(c_reader)
            s_writer.write(encode_frame(opcode, payload, mask=True, fin=bool(b0 & 0x80)))
            await s_writer.drain()
            if self.fault == "echo-client-events" and opcode == 0x1:
                with contextlib.suppress(ValueError):
                    frame = json.loads(payload)
                    if isinstance(frame, dict) and str(frame.get("event", "")).startswith(
                            "client-"):
                        c_writer.write(encode_frame(0x1, payload, mask=False))
                        await c_writer.drain()
            if opcode == 0x8:
                return

    async def _server_to_client(self, s_reader: asyncio.StreamReader,
                                c_writer: asyncio.StreamWriter) -> None:
        while True:
            b0, opcode, payload = await read_frame(s_reader)
            if opcode == 0x1:
                payload = self._rewrite_text(payload)
                if payload is None:
                    continue
            elif opcode == 0x8 and self.fault == "close-codes" and len(payload) >= 2:
                code = struct.unpack("!H", payload[:2])[0]
                if 4000 <= code < 5000:
                    payload = struct.pack("!H", 1000) + payload[2:]
            c_writer.write(encode_frame(opcode, payload, mask=False, fin=bool(b0 & 0x80)))
            await c_writer.drain()
            if opcode == 0x8:
                return

    def _rewrite_text(self, payload: bytes) -> bytes | None:
        if self.fault not in ("drop-member-removed", "object-handshake",
                              "grant-refused-subscriptions", "reencode-event-data"):
            return payload
        try:
            frame = json.loads(payload)
        except ValueError:
            return payload
        if not isinstance(frame, dict):
            return payload
        event = frame.get("event")
        if self.fault == "drop-member-removed" and event == "pusher_internal:member_removed":
            return None
        if self.fault == "object-handshake" and event == "pusher:connection_established":
            frame["data"] = json.loads(frame["data"])
            return json.dumps(frame).encode()
        if self.fault == "grant-refused-subscriptions":
            if event == "pusher:error" and (frame.get("data") or {}).get("code") == 4009:
                return None
            if event == "pusher:subscription_error":
                return json.dumps({"event": "pusher_internal:subscription_succeeded",
                                   "channel": frame.get("channel"), "data": "{}"}).encode()
        if (self.fault == "reencode-event-data" and isinstance(event, str)
                and not event.startswith(("pusher", "client-")) and frame.get("channel")
                and isinstance(frame.get("data"), str)):
            with contextlib.suppress(ValueError):
                frame["data"] = json.dumps(json.loads(frame["data"]), indent=1)
                return json.dumps(frame).encode()
        return payload
