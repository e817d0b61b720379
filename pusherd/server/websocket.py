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
from dataclasses import dataclass

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, Side, State

from pusherd.adapters.base import Adapter
from pusherd.core.app import App
from pusherd.core.outbound import Outbound
from pusherd.core.session import Action, Session
from pusherd.server.actions import carry_out
from pusherd.server.logs import redact_frame
from pusherd.server.state import ServerState

log = logging.getLogger("pusherd.ws")

# websockets' Sans-I/O core logs every frame at DEBUG and every close at INFO, without the
# socket id and with the frames' signatures: the logging setup lets it pass warnings only
# (pusherd.server.logs); the connection lines come from pusherd.server.telemetry.
_FRAMES_LOG = logging.getLogger("pusherd.ws.frames")
# --debug: every frame in and out, with its socket id (auth signatures redacted).
_DEBUG_LOG = logging.getLogger("pusherd.ws.debug")
_LINGER_ZERO = struct.pack("ii", 1, 0)
_CONTROL_NAMES = {Opcode.CLOSE.value: "close", Opcode.PING.value: "ping",
                  Opcode.PONG.value: "pong"}
CLOSE_HANDSHAKE_TIMEOUT = 2.0  # seconds a client gets to answer our close frame


@dataclass(frozen=True, slots=True)
class WebSocketLimits:
    """Per-socket limits from ``[server]`` (bytes)."""

    max_message_size: int
    max_write_buffer_size: int


class WebSocketConnection:
    """The WebSocket shell around one :class:`~pusherd.core.session.Session`.

    It feeds the session each complete message and the time, and carries out the actions
    the session returns, in order: frames to the socket, requests to the adapter. It is
    the adapter's :class:`~pusherd.adapters.base.Subscriber` and the sweeper's
    :class:`~pusherd.server.state.Connection`.
    """

    __slots__ = (
        "transport", "write", "app", "socket_id", "session", "protocol", "writable",
        "adapter", "state", "limits", "_corked", "close_deadline", "_fragments",
        "_fragments_binary", "opened_at", "cut_off",
    )

    def __init__(
        self, transport: asyncio.Transport, session: Session, adapter: Adapter,
        state: ServerState, limits: WebSocketLimits,
    ) -> None:
        self.transport = transport
        # Bound once: the fan-out loop's per-recipient cost is this one call. cork() swaps
        # it for a buffer while the handshake is composed.
        self.write: Callable[[bytes], object] = transport.write
        self._corked: list[bytes] | None = None
        self.session = session
        self.app: App = session.app
        self.socket_id = session.socket_id
        self.adapter = adapter
        self.state = state
        self.limits = limits
        self.protocol = Protocol(
            Side.SERVER, state=State.OPEN, max_size=limits.max_message_size,
            logger=_FRAMES_LOG,
        )
        self.writable = True
        self.close_deadline: float | None = None
        self._fragments: list[bytes] | None = None
        self._fragments_binary = False
        self.opened_at = time.monotonic()
        self.cut_off = False  # True once aborted as a slow consumer
        transport.set_write_buffer_limits(high=limits.max_write_buffer_size)

    # --- actions ------------------------------------------------------------------------

    def run(self, actions: list[Action]) -> None:
        """Carry out a session's actions in order (see :func:`carry_out`)."""
        carry_out(self, actions)

    def closed(self) -> None:
        """The TCP connection is gone: release everything the session held."""
        self.writable = False
        self.state.connections.pop(self.socket_id, None)
        session = self.session
        was_open = session.registered
        self.run(session.close())
        if was_open:
            code, reason = self.close_status()
            self.state.telemetry.connection_closed(
                self.app.id, self.socket_id, code, reason,
                time.monotonic() - self.opened_at, session.messages_received,
                by_client=self.closed_by_client())

    def close_status(self) -> tuple[int, str]:
        """The close code and reason of an ended connection: the one who closed first
        (the server's code, or the client's), 1006 when no close frame was exchanged."""
        if self.cut_off:
            return 1006, "slow consumer cut off"
        protocol = self.protocol
        sent, received = protocol.close_sent, protocol.close_rcvd
        if sent is not None and (received is None or not protocol.close_rcvd_then_sent):
            return int(sent.code), sent.reason
        if received is not None:
            return int(received.code), received.reason
        return 1006, "connection lost"

    def closed_by_client(self) -> bool:
        """Whether the client's close frame came first (its code is the client's choice)."""
        protocol = self.protocol
        received = protocol.close_rcvd
        return not self.cut_off and received is not None and (
            protocol.close_sent is None or protocol.close_rcvd_then_sent is True)

    # --- outbound -----------------------------------------------------------------------

    def deliver(self, frame: Outbound) -> None:
        """Write a frame's WebSocket encoding, unless the socket stopped being writable."""
        if self.writable:
            self.write(frame.websocket)

    def cork(self, first: bytes) -> None:
        """Hold writes, starting with `first`, until :meth:`uncork` sends them at once."""
        self._corked = [first]
        self.write = self._corked.append

    def uncork(self) -> None:
        """Send what :meth:`cork` held in one write and write directly again."""
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
        self.cut_off = True
        self.state.slow_consumers += 1
        self.state.telemetry.slow_consumer(self.app.id, self.socket_id,
                                           self.limits.max_write_buffer_size)
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
        self.run(self.session.refuse(code, message))

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.write(chunk)
            else:  # the Sans-I/O core's end of stream: half-close, as it asks
                self.writable = False
                if self._corked is not None:
                    self.uncork()
                transport = self.transport
                if transport.is_closing():
                    continue
                if transport.can_write_eof():
                    # Closing outright with the client's further input unread would
                    # answer that input with a TCP reset, which can destroy the close
                    # frame before the client reads it (the client then sees 1006, not
                    # the code). The core discards what still arrives; the sweeper
                    # aborts a client that never closes its side.
                    transport.write_eof()
                    if self.close_deadline is None:
                        self.close_deadline = time.monotonic() + CLOSE_HANDSHAKE_TIMEOUT
                else:
                    transport.close()

    # --- inbound ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed received bytes to the RFC 6455 parser; hand each complete message to
        the session (fragments reassembled), then flush control answers.
        """
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
        """The client half-closed the TCP connection."""
        self.protocol.receive_eof()
        self._flush()

    def _message(self, payload: bytes, binary: bool) -> None:
        if not self.writable:
            # This server is closing (or cut the socket off): ignore what the client
            # still sends. Not the protocol's state: a client's own Close read in the same
            # chunk as its last messages makes it CLOSING before they are handled, and
            # what a client sent before its Close is to be handled (RFC 6455 §1.4).
            return
        session = self.session
        if binary:
            self.run(session.receive_binary())
        else:
            try:
                payload.decode()
            except UnicodeDecodeError:
                # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection (1007).
                self.protocol.fail(1007, "invalid UTF-8 in a text frame")
                self.writable = False  # closing: the rest of this chunk is not handled
                return
            telemetry = self.state.telemetry
            if telemetry.sinks:  # the debug console is open: tell it about subscriptions
                before = set(session.subscriptions)
                self.run(session.receive(payload, time.monotonic()))
                self._tell_subscriptions(before)
            else:
                self.run(session.receive(payload, time.monotonic()))
        if session.error is not None:
            error, session.error = session.error, None
            self.state.telemetry.client_error(self.app.id, self.socket_id, error)

    def _tell_subscriptions(self, before: set[str]) -> None:
        after = self.session.subscriptions
        telemetry = self.state.telemetry
        for channel in after.keys() - before:
            telemetry.tell("subscribed", app_id=self.app.id, socket_id=self.socket_id,
                           channel=channel)
        for channel in before - after.keys():
            telemetry.tell("unsubscribed", app_id=self.app.id, socket_id=self.socket_id,
                           channel=channel)

    # --- keepalive (§5) -----------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Keepalive at monotonic `now`: abort an unanswered close after
        ``CLOSE_HANDSHAKE_TIMEOUT``, else run the session's ping/4201 rules.
        """
        if self.close_deadline is not None:
            if now >= self.close_deadline:
                self.transport.abort()
            return
        self.run(self.session.keepalive(now))


class DebugWebSocketConnection(WebSocketConnection):
    """A :class:`WebSocketConnection` that logs every frame in and out with its socket id
    (``--debug``). A separate class, so that a normal run pays nothing for it."""

    __slots__ = ()

    def __init__(self, transport: asyncio.Transport, session: Session, adapter: Adapter,
                 state: ServerState, limits: WebSocketLimits) -> None:
        super().__init__(transport, session, adapter, state, limits)
        # Control frames in (ping, pong, close) never reach _message: log them as the
        # parser hands them over.
        events_received = self.protocol.events_received
        socket_id = self.socket_id

        def logged_events() -> list[Request | Response | Frame]:
            events = events_received()
            for frame in events:
                if not isinstance(frame, Frame):
                    continue
                if frame.opcode is Opcode.CLOSE:
                    data = bytes(frame.data)
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    _DEBUG_LOG.debug("in %s close %d %s", socket_id, code,
                                     data[2:125].decode(errors="replace"))
                elif frame.opcode in (Opcode.PING, Opcode.PONG):
                    _DEBUG_LOG.debug("in %s %s %s", socket_id, frame.opcode.name.lower(),
                                     bytes(frame.data[:125]).hex() or "-")
            return events

        self.protocol.events_received = logged_events  # type: ignore[method-assign]
        # Control frames out (pong, close, our own or the echo of the client's) leave
        # through the parser's output, not deliver(): log them there.
        data_to_send = self.protocol.data_to_send

        def logged_output() -> list[bytes]:
            chunks = data_to_send()
            for chunk in chunks:
                if len(chunk) >= 2 and chunk[0] & 0x0F in _CONTROL_NAMES:
                    payload = chunk[2:2 + (chunk[1] & 0x7F)]
                    if chunk[0] & 0x0F == Opcode.CLOSE:
                        detail = (f"{int.from_bytes(payload[:2], 'big')} "
                                  f"{payload[2:].decode(errors='replace')}"
                                  if len(payload) >= 2 else "")
                    else:
                        detail = payload.hex() or "-"
                    _DEBUG_LOG.debug("out %s %s %s", socket_id,
                                     _CONTROL_NAMES[chunk[0] & 0x0F], detail)
            return chunks

        self.protocol.data_to_send = logged_output  # type: ignore[method-assign]

    def deliver(self, frame: Outbound) -> None:
        """Log the frame, then deliver it."""
        if self.writable:
            _DEBUG_LOG.debug("out %s %s", self.socket_id, redact_frame(frame.payload))
        super().deliver(frame)

    def _message(self, payload: bytes, binary: bool) -> None:
        _DEBUG_LOG.debug("in %s %s", self.socket_id,
                         f"<binary {len(payload)} bytes>" if binary else redact_frame(payload))
        super()._message(payload, binary)
