"""The WebSocket transport: one client connection, framed by websockets' Sans-I/O core.

Inbound bytes go through :class:`websockets.protocol.Protocol` (RFC 6455 parsing,
unmasking, ping/pong and the close handshake); each complete text message is parsed by
:mod:`pusherd.core.messages` and dispatched to the session rules and the adapter.
Outbound channel frames bypass the Sans-I/O writer: :class:`~pusherd.core.outbound.Outbound`
holds the wire bytes built once per event, and :meth:`deliver` writes them synchronously.
Each socket's outbound buffer is capped by the transport's high-water mark; crossing it
cuts the slow consumer off (:meth:`pause_writing`), so it cannot grow memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from pusherd.apps import App
from pusherd.core import messages
from pusherd.core.ids import AppId, AppKey
from pusherd.core.messages import ClientEvent, Ping, Pong, Signin, Subscribe, Unsubscribe
from pusherd.core.outbound import Outbound
from pusherd.core.session import Session
from pusherd.errors import MessageFormatError, PusherError, SubscriptionRefused

if TYPE_CHECKING:
    from pusherd.server.server import Server

log = logging.getLogger("pusherd.ws")

# websockets' Sans-I/O core logs every frame at DEBUG and every close at INFO: one line
# per disconnect is noise (and a measurable cost) at scale, so the CLI lets this logger
# pass warnings only, unless the server runs at log level debug.
_FRAMES_LOG = logging.getLogger("pusherd.ws.frames")
_LINGER_ZERO = struct.pack("ii", 1, 0)
CLOSE_HANDSHAKE_TIMEOUT = 2.0  # seconds a client gets to answer our close frame
_NO_APP = App(id=AppId(""), key=AppKey(""), secret="", enabled=False)
_PONG = Outbound(messages.PONG_FRAME)
_PING = Outbound(messages.PING_FRAME)


class WebSocketConnection:
    """A :class:`~pusherd.adapters.base.Subscriber` over a WebSocket."""

    __slots__ = (
        "server", "transport", "write", "app", "socket_id", "session", "protocol", "writable",
        "_corked",
        "registered", "close_deadline", "_fragments", "_fragments_binary", "origin",
    )

    def __init__(
        self, server: Server, transport: asyncio.Transport, app: App | None, socket_id: str,
        now: float,
    ) -> None:
        self.server = server
        self.transport = transport
        # Bound once: the fan-out loop's per-recipient cost is this one call. cork() swaps
        # it for a buffer while the handshake is composed.
        self.write: Callable[[bytes], object] = transport.write
        self._corked: list[bytes] | None = None
        self.app = app
        self.socket_id = socket_id
        # A refused connection (unknown key) gets a session of no app: it is closed before
        # any message is dispatched (only registered connections dispatch).
        self.session = Session(socket_id, app or _NO_APP, now)
        self.protocol = Protocol(
            Side.SERVER, state=State.OPEN, max_size=server.config.server.max_message_size,
            logger=_FRAMES_LOG,
        )
        self.writable = True
        self.registered = False
        self.close_deadline: float | None = None
        self._fragments: list[bytes] | None = None
        self._fragments_binary = False
        transport.set_write_buffer_limits(high=server.config.server.max_write_buffer_size)

    # --- outbound -----------------------------------------------------------------------

    def deliver(self, frame: Outbound) -> None:
        if self.writable:
            self.write(frame.websocket)

    def send(self, payload: bytes) -> None:
        if self.writable:
            self.write(Outbound(payload).websocket)

    def cork(self, first: bytes) -> None:
        """Hold writes, starting with `first`, until :meth:`uncork` sends them at once."""
        self._corked = [first]
        self.write = self._corked.append

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        self.write = self.transport.write
        if corked:
            self.transport.write(b"".join(corked))

    def pause_writing(self) -> None:
        """The outbound buffer crossed ``max_write_buffer_size``: cut the slow consumer off.

        Closing politely would queue behind the backlog, so the socket is aborted; the
        client sees 1006 and pusher-js reconnects after its usual delay.
        """
        if not self.writable:
            return
        self.writable = False
        self.server.stats_slow_consumers += 1
        log.warning("socket %s cut off: outbound buffer over %d bytes (slow consumer)",
                    self.socket_id, self.server.config.server.max_write_buffer_size)
        # Linger 0: the kernel drops the unsent backlog and resets the connection at once,
        # instead of holding it (up to the buffer size per socket) in FIN-WAIT.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.transport.abort()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake with `code`; the sweeper aborts it if unanswered."""
        if not self.writable or self.protocol.state is not State.OPEN:
            return
        self.protocol.send_close(code, reason[:120])
        self._flush()
        self.writable = False
        self.close_deadline = time.monotonic() + CLOSE_HANDSHAKE_TIMEOUT

    def terminate(self, code: int, message: str) -> None:
        """``pusher:error`` with `code`, then close with the same code (spec §1.4)."""
        self.send(messages.encode_error(code, message))
        self.close(code, message)

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.write(chunk)
            else:  # the Sans-I/O core asks for the TCP connection to be closed
                self.writable = False
                if self._corked is not None:
                    self.uncork()
                self.transport.close()

    # --- inbound ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        frames = protocol.events_received()
        if frames:
            self.session.note_activity(time.monotonic())
        for frame in frames:
            assert isinstance(frame, Frame)  # a server-side Protocol only yields frames
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    self._message(bytes(frame.data), opcode is Opcode.BINARY)
                else:
                    self._fragments = [bytes(frame.data)]
                    self._fragments_binary = opcode is Opcode.BINARY
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._message(data, self._fragments_binary)
        self._flush()

    def receive_eof(self) -> None:
        self.protocol.receive_eof()
        self._flush()

    def _message(self, payload: bytes, binary: bool) -> None:
        if self.protocol.state is not State.OPEN or not self.registered:
            return  # refused or closing: ignore what the client still sends
        if binary:
            self.send(MessageFormatError("Binary frames are not supported").to_frame())
            return
        try:
            payload.decode()
        except UnicodeDecodeError:
            # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection with 1007.
            self.protocol.fail(1007, "invalid UTF-8 in a text frame")
            return
        try:
            self._dispatch(messages.parse_client_message(payload))
        except SubscriptionRefused as exc:
            self.send(exc.to_frame())
            self.send(exc.to_subscription_error_frame())
        except PusherError as exc:
            self.send(exc.to_frame())

    def _dispatch(self, message: messages.ClientMessage) -> None:
        session, app, adapter = self.session, self.app, self.server.adapter
        assert app is not None  # only registered connections of a known app dispatch
        if isinstance(message, Ping):
            self.deliver(_PONG)
        elif isinstance(message, Pong):
            pass
        elif isinstance(message, Subscribe):
            grant = session.authorize_subscribe(message)
            adapter.subscribe(app, self, grant, time.monotonic())
        elif isinstance(message, Unsubscribe):
            adapter.unsubscribe(app, self, message.channel)
        elif isinstance(message, Signin):
            adapter.sign_in(app, self, session.authorize_signin(message))
        elif isinstance(message, ClientEvent):
            user_id = session.authorize_client_event(message, time.monotonic())
            adapter.client_event(app, self, message.event, message.channel, message.data,
                                 user_id)

    # --- keepalive (§5) -----------------------------------------------------------------

    def ping(self) -> None:
        self.deliver(_PING)
