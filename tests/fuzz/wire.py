"""Raw wire access for the live fuzzer: client WebSocket frames built byte by byte (so they
can be malformed on purpose), server frames decoded strictly, HTTP/1.1 responses read
without a client library (so every byte the server sends is checked).

Nothing here sleeps; every read has a bound.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TIMEOUT = 5.0


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True,
                 rsv: int = 0, length: int | None = None, minimal: bool = True) -> bytes:
    """One client frame (RFC 6455 §5.2). `length` overrides the declared payload length;
    ``minimal=False`` uses the 64-bit length form whatever the size."""
    declared = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    mask_bit = 0x80 if mask else 0
    if minimal and declared < 126:
        head += bytes([mask_bit | declared])
    elif minimal and declared < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", declared)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", declared & 0xFFFF_FFFF_FFFF_FFFF)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if len(payload) < 256 \
        else _mask_long(payload, key)
    return head + key + masked


def _mask_long(payload: bytes, key: bytes) -> bytes:
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


def text(payload: bytes) -> bytes:
    return encode_frame(OP_TEXT, payload)


@dataclass(frozen=True, slots=True)
class ServerFrame:
    fin: bool
    opcode: int
    payload: bytes


class FrameDecodeError(Exception):
    """The server sent bytes that are not a valid server-to-client frame."""


def decode_frames(buffer: bytearray) -> list[ServerFrame]:
    """Take every complete server frame off the front of `buffer` (RFC 6455 §5.2).

    A server frame is never masked and sets no RSV bit (no extension was negotiated);
    anything else raises :class:`FrameDecodeError`.
    """
    frames = []
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise FrameDecodeError(f"server frame with RSV bits {first & 0x70:#x}")
        if second & 0x80:
            raise FrameDecodeError("server frame is masked")
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, offset = struct.unpack_from("!H", buffer, 2)[0], 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
        if len(buffer) < offset + length:
            break
        opcode = first & 0x0F
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise FrameDecodeError(f"server frame with opcode {opcode}")
        payload = bytes(buffer[offset:offset + length])
        frames.append(ServerFrame(bool(first & 0x80), opcode, payload))
        del buffer[:offset + length]
    return frames


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def upgrade_request(path: str, *, host: str = "127.0.0.1", extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n").encode() + \
        b"Sec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n"


class WebSocketStream:
    """A client WebSocket over a plain asyncio stream, frames in and out unmodified."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.frames: list[ServerFrame] = []

    @classmethod
    async def open(cls, port: int, path: str) -> WebSocketStream:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, limit=1 << 22), TIMEOUT)
        writer.write(upgrade_request(path))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        if not head.startswith(b"HTTP/1.1 101 "):
            writer.close()
            raise ConnectionError(f"upgrade refused: {head[:200]!r}")
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def next_frame(self, timeout: float = TIMEOUT) -> ServerFrame | None:
        """The next server frame, or None at end of stream. Raises on a timeout."""
        while not self.frames:
            self.frames.extend(decode_frames(self.buffer))
            if self.frames:
                break
            chunk = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
            if not chunk:
                if self.buffer:
                    raise FrameDecodeError(
                        f"stream ended inside a frame: {bytes(self.buffer[:80])!r}")
                return None
            self.buffer += chunk
        return self.frames.pop(0)

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpDecodeError(Exception):
    """The server's HTTP bytes are not a valid HTTP/1.1 response sequence."""


def decode_responses(data: bytes, head_flags: list[bool]) -> list[HttpAnswer]:
    """Split everything a server sent on one connection into responses.

    `head_flags` says, per request in order, whether it was HEAD (its response has
    headers only). Interim ``100 Continue`` responses are skipped. pusherd always sends
    Content-Length, so a response without one is an error.
    """
    answers: list[HttpAnswer] = []
    rest = data
    while rest:
        head, sep, after = rest.partition(b"\r\n\r\n")
        if not sep:
            raise HttpDecodeError(f"incomplete response head: {rest[:200]!r}")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
            raise HttpDecodeError(f"bad status line: {lines[0][:200]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise HttpDecodeError(f"bad header line: {line[:200]!r}")
            headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        if status == 100:
            rest = after
            continue
        index = len(answers)
        is_head = index < len(head_flags) and head_flags[index]
        length_text = headers.get("content-length")
        if length_text is None or not length_text.isdigit():
            raise HttpDecodeError(f"HTTP {status} without Content-Length")
        length = int(length_text)
        if is_head and not (headers.get("connection") == "close" and len(after) == length):
            # A HEAD answer has no body, except a refusal before the request was read
            # (malformed, too large, a bad upgrade): the connection ends after it, so its
            # body cannot be mistaken for the next response.
            length = 0
        if len(after) < length:
            raise HttpDecodeError(f"HTTP {status} body cut short")
        answers.append(HttpAnswer(status, headers, after[:length]))
        rest = after[length:]
    return answers


async def exchange(port: int, chunks: list[bytes], timeout: float = TIMEOUT) -> bytes:
    """Send `chunks` (one write each) on a new connection, half-close, read to the end.

    Raises :class:`TimeoutError` if the server neither answers nor closes in time.
    """
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, limit=1 << 22), timeout)
    received = bytearray()
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        while True:
            data = await asyncio.wait_for(reader.read(1 << 16), timeout)
            if not data:
                return bytes(received)
            received += data
    except (ConnectionResetError, BrokenPipeError):
        # The server may close while a refused request's body is still being sent.
        return bytes(received)
    finally:
        writer.transport.abort()
