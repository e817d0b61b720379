"""Regression tests for what the fuzzing campaign found, each with the input that found
it, against a real pusherd process (tests/support). See docs/fuzzing.md for the kinds.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import pytest

from tests.fuzz import generators as gen
from tests.fuzz import oracle, wire
from tests.fuzz.live import WS_PATH
from tests.support.pusherd_process import PusherdProcess, run_pusherd


@pytest.fixture(scope="module")
def pusherd() -> Iterator[PusherdProcess]:
    with run_pusherd(gen.SERVER_TOML) as server:
        yield server


def _stream_after(port: int, data: bytes) -> tuple[list[wire.ServerFrame], str]:
    """Open a WebSocket, send `data`, read to the end of the stream.

    Returns the server frames after the handshake and how the stream ended: ``"eof"``
    (an orderly FIN) or ``"reset"``. A plain blocking socket, so that data the kernel
    received before a reset is read before the reset is seen.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wire.TIMEOUT) as sock:
        sock.sendall(wire.upgrade_request(WS_PATH))
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        buffer = bytearray(received.partition(b"\r\n\r\n")[2])
        frames = wire.decode_frames(buffer)
        while not frames:
            buffer += sock.recv(65536)
            frames = wire.decode_frames(buffer)
        assert b"connection_established" in frames[0].payload
        sock.sendall(data)
        ending = "eof"
        try:
            while chunk := sock.recv(65536):
                buffer += chunk
        except ConnectionResetError:
            ending = "reset"
        return wire.decode_frames(buffer), ending


# Kind: a connection failed for a protocol error closed its TCP connection at once, with
# the client's further input unread, so the kernel answered with a reset that destroyed
# the close frame (the client saw 1006 instead of the code). Found by the framing fuzzer
# ("unmasked", "opcode 6", "rsv bits", "declared length 65537", ... then more input).
MORE_INPUT = wire.text(gen.PING_TEXT) * 20_000  # ~0.8 MB the server will never parse


@pytest.mark.parametrize(("name", "bad", "code"), [
    ("unmasked frame", wire.encode_frame(wire.OP_TEXT, gen.PING_TEXT, mask=False), 1002),
    ("reserved opcode", b"\x86\x81\xfa\xd90m\x82", 1002),
    ("rsv bits", wire.encode_frame(wire.OP_TEXT, gen.PING_TEXT, rsv=1), 1002),
    ("declared length over max_message_size",
     b"\x81\xff\x00\x00\x00\x00\x00\x01\x00\x01\x02\x9a\x82\x16", 1009),
    ("invalid UTF-8 text", b"\x81\x81\xe5\xf1b\x10\x1a", 1007),
    ("control frame over 125 bytes", wire.encode_frame(wire.OP_PING, b"p" * 126), 1002),
])
async def test_a_failed_connection_ends_with_its_close_code_and_no_reset(
    pusherd: PusherdProcess, name: str, bad: bytes, code: int
) -> None:
    frames, ending = await asyncio.to_thread(_stream_after, pusherd.port, bad + MORE_INPUT)
    closes = [wire.close_code(f.payload) for f in frames if f.opcode == wire.OP_CLOSE]
    assert closes == [code], f"{name}: close frames {closes}"
    assert oracle.check_close_code(code) == []
    assert ending == "eof", f"{name}: the stream ended with a {ending}"
    await _server_answers(pusherd.port)


async def _server_answers(port: int) -> None:
    """The server still answers a client on a new connection."""
    ws = await wire.WebSocketStream.open(port, WS_PATH)
    try:
        assert (await ws.next_frame()) is not None
        ws.send(wire.text(gen.PING_TEXT))
        frame = await ws.next_frame()
        assert frame is not None and json.loads(frame.payload)["event"] == "pusher:pong"
    finally:
        ws.abort()

