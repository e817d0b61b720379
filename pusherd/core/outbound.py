"""One outbound frame, encoded once per event whatever the number of recipients.

:class:`Outbound` holds the JSON payload and builds each transport's wire form
once (RFC 6455 §5.2 framing for WebSocket: FIN + text opcode, unmasked as a server
sends, no extensions), so fan-out to N sockets costs N ``transport.write`` calls and one
encode. A future HTTP-fallback transport adds its own cached form here.
"""

from __future__ import annotations

import struct


def websocket_text_frame(payload: bytes) -> bytes:
    """RFC 6455 §5.2: one unfragmented, unmasked text frame carrying `payload`."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


class Outbound:
    """A server frame's JSON `payload` and its wire encodings, each built once.

    The WebSocket frame is built at construction: every socket is a WebSocket today, and
    a plain attribute keeps the per-recipient cost of the fan-out loop to one load. The
    forms of other transports (HTTP fallback) belong here too, built lazily.
    """

    __slots__ = ("payload", "websocket")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.websocket = websocket_text_frame(payload)
