"""One outbound frame, encoded once per event whatever the number of recipients.

:class:`Outbound` holds the JSON payload and builds each transport's wire form
once (RFC 6455 §5.2 framing for WebSocket: FIN + text opcode, unmasked as a server
sends, no extensions; an ``a["…"]`` line for the HTTP fallback transports, §15.2), so
fan-out to N connections costs N writes and one encode per transport in use.
"""

from __future__ import annotations

import struct

from pusherd.core.xhr import encode_messages_line


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

    The WebSocket frame is built at construction: most sockets are WebSockets, and a
    plain attribute keeps the per-recipient cost of the fan-out loop to one load. The
    HTTP fallback line (:attr:`xhr`) is built on first use, so events that reach no
    fallback session never pay for it.
    """

    __slots__ = ("payload", "websocket", "_xhr")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.websocket = websocket_text_frame(payload)
        self._xhr: bytes | None = None

    @property
    def xhr(self) -> bytes:
        """The frame as an HTTP fallback ``a["…"]`` line (§15.2), built once."""
        line = self._xhr
        if line is None:
            line = self._xhr = encode_messages_line(self.payload)
        return line
