"""The HTTP fallback transports (``xhr_streaming``, ``xhr_polling``): a second shell around
the same :class:`~pusherd.core.session.Session` as a WebSocket (spec §15).

A :class:`FallbackConnection` is one client connection carried by HTTP requests instead of
a socket. It is registered in :attr:`ServerState.connections` (swept and drained like a
WebSocket), it is the adapter's :class:`~pusherd.adapters.base.Subscriber`, and it hands
its session's actions to :func:`~pusherd.server.actions.carry_out`. What differs is the
carrier:

* frames go to the open *receive* request (a stream written as frames come, or a held
  poll answered with them) or wait in the session's queue until the next one arrives; the
  queue is capped at ``max_write_buffer_size`` bytes, and a session over it is cut off like
  a slow consumer;
* a stream stops receiving writes once pusher-js's 256 KB reopen point is passed; the
  frames after it wait for the reopened stream, which continues the same session;
* idle receive requests get an ``h`` heartbeat every ``fallback_heartbeat_interval``;
* a session without a receive request for ``fallback_session_timeout`` seconds ends like a
  closed socket (its channels left, presence members removed, the user signed out).

A session is found by the app key and the client's session path together, and only from
the peer address and page (``Origin``) that opened it: another app's URL, another address
or another origin is answered 404.

:class:`FallbackTransport` routes the requests (``{httpPath}/app/{key}/{server}/{session}/
{xhr_streaming|xhr|xhr_send}`` and their CORS preflights) that
:class:`~pusherd.server.protocol.ServerProtocol` hands it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pusherd.adapters.base import Adapter
from pusherd.apps import AppRegistry
from pusherd.core.api import parse_query
from pusherd.core.app import App
from pusherd.core.outbound import Outbound
from pusherd.core.session import Action, Session, SessionSettings
from pusherd.core.xhr import (
    HEARTBEAT_LINE,
    STREAM_REOPEN_CHARS,
    RequestKind,
    encode_close_line,
    encode_open_line,
    parse_route,
    parse_send_body,
)
from pusherd.errors import SendBodyError
from pusherd.server.actions import carry_out
from pusherd.server.logs import redact_frame
from pusherd.server.state import ServerState

log = logging.getLogger("pusherd.fallback")
# --debug: every frame in and out with its socket id, as for a WebSocket (same logger,
# same "in <socket_id> <frame>" / "out <socket_id> <frame>" lines, auth redacted).
_DEBUG_LOG = logging.getLogger("pusherd.ws.debug")

_LINGER_ZERO = struct.pack("ii", 1, 0)
# An Origin header echoed in Access-Control-Allow-Origin must be a plain origin.
_ORIGIN = re.compile(rb"\A[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.\-\[\]:]{1,255}\Z")
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 503: "Service Unavailable"}
# No proxy or browser may cache or transform a fallback response; nginx must not buffer
# a stream (X-Accel-Buffering).
_COMMON_HEADERS = (
    b"Content-Type: application/javascript; charset=UTF-8\r\n"
    b"Cache-Control: no-store, no-cache, no-transform, must-revalidate, max-age=0\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Vary: Origin\r\n"
)


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    """``[server]`` settings of the fallback transports (seconds, bytes)."""

    http_path: str = "/pusher"  # pusher-js's httpPath, under [server] path_prefix
    session_timeout: float = 5.0  # a session with no receive request this long ends
    heartbeat_interval: float = 25.0  # an idle receive request gets "h" this often
    max_queue_size: int = 1_048_576  # bytes waiting for a receive request before cut-off
    max_message_size: int = 65_536  # largest message of an xhr_send body
    hostname: str = ""  # announced in the "o" frame: later requests go to this host
    debug_frames: bool = False  # --debug: log every frame in and out (a slower class)


class HttpExchange(Protocol):
    """The HTTP connection a fallback request arrived on (the server's TCP protocol)."""

    transport: asyncio.Transport | None

    def send(self, data: bytes) -> None:
        """Write response bytes (after any response of the same received chunk)."""

    def finish(self, data: bytes, keep_alive: bool) -> None:
        """Write the last bytes of the response; without keep-alive, close after them."""

    def hold(self, request: ReceiveRequest) -> None:
        """Keep the response open for `request`: no idle timeout, input deferred."""

    def release(self) -> None:
        """The held response is complete: serve the connection's next request."""


def _cors_origin(origin: bytes | None) -> bytes:
    # pusher-js sends no credentials, so "*" would do; echoing a well-formed Origin works
    # as well for every browser and lets a proxy keep per-origin rules.
    if origin is not None and _ORIGIN.match(origin):
        return origin
    return b"*"


def response_head(status: int, origin: bytes | None, *, length: int | None,
                  keep_alive: bool, extra: bytes = b"") -> bytes:
    """A fallback response's status line and headers (CORS included). `length` None:
    the body runs until the connection closes (a stream)."""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n".encode()
        + _COMMON_HEADERS
        + b"Access-Control-Allow-Origin: " + _cors_origin(origin) + b"\r\n"
        + extra
    )
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    if not keep_alive or length is None:
        head += b"Connection: close\r\n"
    return head + b"\r\n"


def _plain(status: int, origin: bytes | None, message: str, keep_alive: bool) -> bytes:
    body = message.encode() + b"\n"
    return response_head(status, origin, length=len(body), keep_alive=keep_alive) + body


class ReceiveRequest:
    """One open receive request of a session: a stream, or a held poll."""

    __slots__ = ("exchange", "connection", "streaming", "keep_alive", "written", "full",
                 "origin", "ended", "send", "open_stream")

    def __init__(self, exchange: HttpExchange, connection: FallbackConnection,
                 streaming: bool, keep_alive: bool, origin: bytes | None) -> None:
        self.exchange = exchange
        self.connection = connection
        self.streaming = streaming
        self.keep_alive = keep_alive and not streaming
        self.written = 0  # body characters written (streams: for the reopen point)
        self.full = False  # a stream past pusher-js's reopen point: write nothing more
        self.origin = origin
        self.ended = False
        self.send = exchange.send  # bound once: the fan-out's per-delivery call
        # A stream that takes frames as they come (not full, not ended, no close queued).
        self.open_stream = streaming
        transport = exchange.transport
        if transport is not None:
            # A poll answer may carry the whole queue; a stream is cut off past the cap.
            transport.set_write_buffer_limits(
                high=connection.settings.max_queue_size + 65_536)

    # --- called by the HTTP connection --------------------------------------------------

    def connection_lost(self) -> None:
        """The client went away (pusher-js aborts a stream to reopen it)."""
        if not self.ended:
            self.ended = True
            self.open_stream = False
            self.connection.request_ended(self)

    def pause_writing(self) -> None:
        """The socket buffer is over its mark: a stream's reader is a slow consumer (a
        poll's one answer is bounded by the queue cap already)."""
        if self.streaming and not self.ended:
            self.connection.cut_off("outbound buffer")

    # --- writing ------------------------------------------------------------------------

    def start_stream(self) -> None:
        """The stream's head: a 200 whose body lasts as long as the stream."""
        self.exchange.send(response_head(200, self.origin, length=None, keep_alive=False))

    def write(self, data: bytes) -> None:
        """Write body lines on the stream; past the reopen point the stream is full."""
        self.send(data)
        self.written += len(data)
        if self.written > STREAM_REOPEN_CHARS:
            self.full = True
            self.open_stream = False

    def end(self, body: bytes = b"") -> None:
        """End the response: a poll is answered with `body`, a stream closes after it."""
        if self.ended:
            return
        self.ended = True
        self.open_stream = False
        exchange = self.exchange
        if self.streaming:
            if body:
                exchange.send(body)
            exchange.finish(b"", keep_alive=False)
        else:
            exchange.finish(response_head(200, self.origin, length=len(body),
                                          keep_alive=self.keep_alive) + body,
                            keep_alive=self.keep_alive)
        exchange.release()

    def abort(self) -> None:
        """Drop the connection at once, unsent bytes included (linger 0)."""
        self.ended = True
        self.open_stream = False
        transport = self.exchange.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        transport.abort()


class FallbackConnection:
    """One client connection over the HTTP fallback transports (spec §15).

    The session's frames are written to the open receive request, or queued (``a["…"]``
    lines, at most ``max_queue_size`` bytes) until one arrives. The adapter's
    :class:`~pusherd.adapters.base.Subscriber`, :func:`carry_out`'s target and the
    sweeper's :class:`~pusherd.server.state.Connection`.
    """

    __slots__ = (
        "socket_id", "session", "app", "adapter", "state", "settings", "key", "peer", "origin",
        "request", "queue", "queued", "detached_at", "last_write", "written_seen", "closing",
        "ended", "_flush_scheduled", "_forget", "opened_at", "close_status",
    )

    def __init__(self, session: Session, adapter: Adapter, state: ServerState,
                 settings: FallbackSettings, key: tuple[str, str], peer: str | None,
                 origin: bytes | None, now: float,
                 forget: Callable[[FallbackConnection], None]) -> None:
        self.session = session
        self.socket_id = session.socket_id
        self.app: App = session.app
        self.adapter = adapter
        self.state = state
        self.settings = settings
        self.key = key  # (app key, session path): the registry key
        self.peer = peer  # the address that opened the session; others are refused
        self.origin = origin  # the page that opened it (Origin header); others are refused
        self.request: ReceiveRequest | None = None
        self.queue: list[bytes] = []
        self.queued = 0  # bytes in queue
        self.detached_at = now  # monotonic: since when no receive request is open
        self.last_write = now  # monotonic: when the sweep last saw the client get something
        self.written_seen = 0  # the open stream's `written` at that sweep
        self.closing = False  # the close line is queued: nothing more is delivered
        self.ended = False
        self._flush_scheduled = False
        self._forget = forget
        self.opened_at = now  # monotonic, for the closed line's duration
        self.close_status: tuple[int, str] | None = None  # the code of our close line

    # --- actions ------------------------------------------------------------------------

    def run(self, actions: list[Action]) -> None:
        """Carry out a session's actions in order (see :func:`carry_out`)."""
        carry_out(self, actions)

    def deliver(self, frame: Outbound) -> None:
        """Write the frame's ``a["…"]`` line (built once per event) to the open stream,
        or queue it for the next receive request; over the queue cap: cut off."""
        request = self.request
        if request is not None and request.open_stream:
            # The fan-out's hot path: one bound call per recipient (ReceiveRequest.write
            # inlined), nothing encoded, no clock read (the sweep notices writes).
            line = frame.xhr
            request.send(line)
            request.written += len(line)
            if request.written > STREAM_REOPEN_CHARS:
                request.full = True
                request.open_stream = False
            return
        if not self.closing:
            self._enqueue(frame.xhr)

    def close(self, code: int, reason: str = "") -> None:
        """Queue ``c[code,"reason"]`` after the frames already queued; the session ends
        once it is handed to a receive request (or when the session expires)."""
        if self.closing:
            return
        self.close_status = (code, reason)
        self._enqueue(encode_close_line(code, reason[:120]))
        self.closing = True
        if self.request is not None:
            self.request.open_stream = False  # frames after the close line are dropped

    def terminate(self, code: int, message: str) -> None:
        """``pusher:error`` with `code`, then close with the same code (spec §1.4)."""
        self.run(self.session.refuse(code, message))

    # --- the queue ----------------------------------------------------------------------

    def _enqueue(self, line: bytes) -> None:
        if self.ended:
            return
        self.queue.append(line)
        self.queued += len(line)
        if self.queued > self.settings.max_queue_size:
            self.cut_off("queue")
            return
        request = self.request
        if request is not None and (not request.streaming or not request.full) \
                and not self._flush_scheduled:
            # Frames of one event-loop turn leave together: one poll answer, one write.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand the queued lines to the open receive request, if it can take them."""
        request = self.request
        if request is None or not self.queue or request.ended:
            return
        if request.streaming and request.full:
            return
        lines, self.queue, self.queued = self.queue, [], 0
        body = b"".join(lines)
        self.last_write = time.monotonic()
        closed = self.closing
        if request.streaming:
            request.write(body)
            if closed:
                self._detach(request)
                request.end()
        else:
            self._detach(request)
            request.end(body)
        if closed:
            self.end()

    # --- receive requests ---------------------------------------------------------------

    def attach(self, request: ReceiveRequest, now: float) -> None:
        """A new receive request for this session; it supersedes an older one (pusher-js
        reopens a stream before the old one's abort may have reached the server)."""
        old = self.request
        if old is not None:
            self.request = None
            old.end(HEARTBEAT_LINE if not old.streaming else b"")
        self.request = request
        self.session.note_activity(now)  # a receive request proves the client is there
        self.last_write, self.written_seen = now, 0
        request.open_stream = request.streaming and not self.closing
        if request.streaming:
            request.start_stream()
        self.flush()

    def _detach(self, request: ReceiveRequest) -> None:
        if self.request is request:
            self.request = None
            self.detached_at = time.monotonic()

    def request_ended(self, request: ReceiveRequest) -> None:
        """The client dropped a receive request (TCP closed)."""
        self._detach(request)

    # --- the end ------------------------------------------------------------------------

    def cut_off(self, what: str) -> None:
        """A client that does not read its frames: drop them and end the session."""
        if self.ended:
            return
        self.state.slow_consumers += 1
        self.state.telemetry.slow_consumer(self.app.id, self.socket_id,
                                           self.settings.max_queue_size)
        log.info("fallback session %s cut off: %s over its queue cap", self.socket_id, what)
        request, self.request = self.request, None
        if request is not None:
            request.abort()
        self.end("cut off")

    def end(self, why: str = "closed") -> None:
        """The session is over: release everything it held, as for a closed socket."""
        if self.ended:
            return
        log.debug("fallback session %s ended: %s", self.socket_id, why)
        self.ended = True
        self.closing = True
        self.queue, self.queued = [], 0
        request, self.request = self.request, None
        if request is not None:
            request.end()
        self.state.connections.pop(self.socket_id, None)
        self._forget(self)
        session = self.session
        was_open = session.registered
        self.run(session.close())
        if was_open:  # the same line and counters as a WebSocket's close (metrics, logs)
            code, reason = self.close_status or (1006, f"fallback session {why}")
            self.state.telemetry.connection_closed(
                self.app.id, self.socket_id, code, reason,
                time.monotonic() - self.opened_at, session.messages_received)

    # --- keepalive (§5, §15.2) ----------------------------------------------------------

    def sweep(self, now: float) -> None:
        """At monotonic `now`: end a session left without a receive request for
        ``session_timeout``; give an idle receive request its heartbeat; then the session's
        own ping/4201 rules."""
        request = self.request
        settings = self.settings
        if request is None:
            if now - self.detached_at >= settings.session_timeout:
                self.end("no receive request")
            return
        if request.written != self.written_seen:  # the stream got frames since last time
            self.written_seen = request.written
            self.last_write = now
        elif now - self.last_write >= settings.heartbeat_interval:
            self.last_write = now
            if request.streaming:
                if request.open_stream:
                    request.write(HEARTBEAT_LINE)
            else:
                self._detach(request)
                request.end(HEARTBEAT_LINE)
        self.run(self.session.keepalive(now))


class DebugFallbackConnection(FallbackConnection):
    """A :class:`FallbackConnection` that logs every frame out with its socket id
    (``--debug``; frames in are logged by :class:`FallbackTransport`). A separate class,
    so that a normal run pays nothing for it."""

    __slots__ = ()

    def deliver(self, frame: Outbound) -> None:
        """Log the frame, then deliver it (as :meth:`FallbackConnection.deliver`)."""
        if not self.closing:
            _DEBUG_LOG.debug("out %s %s", self.socket_id, redact_frame(frame.payload))
        super().deliver(frame)

    def close(self, code: int, reason: str = "") -> None:
        """Log the close line, then queue it (as :meth:`FallbackConnection.close`)."""
        if not self.closing:
            _DEBUG_LOG.debug("out %s close %d %s", self.socket_id, code, reason[:120])
        super().close(code, reason)


class FallbackTransport:
    """Routes fallback requests to sessions; owns the registry of open sessions."""

    def __init__(self, state: ServerState, apps: AppRegistry, adapter: Adapter,
                 session_settings: SessionSettings, settings: FallbackSettings) -> None:
        self.state = state
        self.apps = apps
        self.adapter = adapter
        self.session_settings = session_settings
        self.settings = settings
        self.root = settings.http_path + "/app/"
        self.sessions: dict[tuple[str, str], FallbackConnection] = {}

    def owns(self, path: str) -> bool:
        """Whether `path` (without the server's path prefix) is a fallback URL."""
        return path.startswith(self.root)

    def refusal(self, status: int, origin: bytes | None, message: str) -> bytes:
        """A whole refusal in the transports' form (plain text, CORS headers, then the
        connection closes), for what the HTTP layer refuses before routing (a body over
        ``max_request_size``: 413, unread)."""
        return _plain(status, origin, message, keep_alive=False)

    def handle(self, exchange: HttpExchange, method: str, path: str, query: str,
               body: bytes, headers: dict[bytes, bytes], peer: str | None,
               keep_alive: bool) -> None:
        """Serve one fallback request (spec §15.2); every answer carries CORS headers."""
        origin = headers.get(b"origin")
        route = parse_route(path[len(self.settings.http_path):])
        if route is None:
            exchange.finish(_plain(404, origin, "Not a fallback transport URL", keep_alive),
                            keep_alive)
            return
        if method == "OPTIONS":  # the CORS preflight of every request (JSON content type)
            allowed = headers.get(b"access-control-request-headers", b"Content-Type")
            if not re.fullmatch(rb"[A-Za-z0-9, -]{1,200}", allowed):
                allowed = b"Content-Type"
            exchange.finish(response_head(
                204, origin, length=0, keep_alive=keep_alive,
                extra=b"Access-Control-Allow-Methods: POST, OPTIONS\r\n"
                      b"Access-Control-Allow-Headers: " + allowed + b"\r\n"
                      b"Access-Control-Max-Age: 86400\r\n"), keep_alive)
            return
        if method != "POST":
            exchange.finish(_plain(405, origin, "Fallback requests are POST", keep_alive),
                            keep_alive)
            return
        key = (route.key, route.session)
        connection = self.sessions.get(key)
        if connection is not None and (connection.peer != peer or connection.origin != origin):
            connection = None  # never reachable from another address or another page
        now = time.monotonic()
        if route.kind is RequestKind.SEND:
            if connection is None:
                exchange.finish(_plain(404, origin, "No such session", keep_alive), keep_alive)
                return
            exchange.finish(self._send(connection, body, origin, keep_alive, now), keep_alive)
            return
        streaming = route.kind is RequestKind.STREAM
        if connection is not None:
            request = ReceiveRequest(exchange, connection, streaming, keep_alive, origin)
            exchange.hold(request)
            connection.attach(request, now)
            return
        if key in self.sessions:  # the session of another address or page: not yours
            exchange.finish(_plain(404, origin, "No such session", keep_alive), keep_alive)
            return
        if not self.state.admits_client():
            exchange.finish(_plain(503, origin, "Server is at its connection limit",
                                   keep_alive), keep_alive)
            return
        if self.state.starting:  # bound, adapter not started yet: as while draining
            exchange.finish(_plain(503, origin, "Server is starting", False), False)
            return
        if self.state.draining:
            # No new session while draining: an HTTP failure makes pusher-js back off and
            # try elsewhere, where an in-band close 4200 would have it retry here at once.
            app = self.apps.by_key(key[0])
            self.state.telemetry.upgrade_refused_draining(app.id if app else "", peer)
            exchange.finish(_plain(503, origin, "Server is shutting down", False), False)
            return
        self._open(exchange, key, streaming, query, origin, peer, keep_alive, now)

    def _open(self, exchange: HttpExchange, key: tuple[str, str], streaming: bool,
              query: str, origin: bytes | None, peer: str | None, keep_alive: bool,
              now: float) -> None:
        """A receive request for a new session: ``o``, then the session's open (§1.3)."""
        state = self.state
        app = self.apps.by_key(key[0])
        session = Session(state.new_socket_id(), app, now, self.session_settings,
                          state.telemetry.received(app.id if app is not None else ""))
        connection_class = (DebugFallbackConnection if self.settings.debug_frames
                            else FallbackConnection)
        connection = connection_class(session, self.adapter, state, self.settings, key,
                                      peer, origin, now, self._forget)
        request = ReceiveRequest(exchange, connection, streaming, keep_alive, origin)
        self.sessions[key] = connection
        state.connections[connection.socket_id] = connection
        exchange.hold(request)
        connection.attach(request, now)
        # "o" first, once per session; then connection_established or the refusal.
        if streaming:
            request.write(encode_open_line(self.settings.hostname))
        else:
            connection.queue.append(encode_open_line(self.settings.hostname))
        origin_text = None if origin is None else origin.decode("latin-1")
        params = dict(parse_query(query))
        connection.run(session.open(params, origin_text, state.draining))
        connection.flush()
        if session.registered:  # the same line and counters as a WebSocket's open
            state.telemetry.connection_opened(session.app.id, session.socket_id, peer,
                                              origin_text, params.get("protocol"))
        elif session.refusal is not None:
            code, reason = session.refusal
            state.telemetry.connection_refused(session.app.id, key[0], code, reason, peer,
                                               origin_text)

    def _send(self, connection: FallbackConnection, body: bytes, origin: bytes | None,
              keep_alive: bool, now: float) -> bytes:
        try:
            messages = parse_send_body(body)
        except SendBodyError as exc:
            return _plain(400, origin, str(exc), keep_alive)
        limit = self.settings.max_message_size
        if any(len(m) > limit for m in messages):
            return _plain(413, origin, f"A message is larger than {limit} bytes", keep_alive)
        session = connection.session
        session.note_activity(now)  # "[]" is pusher-js's ping on these transports
        debug = self.settings.debug_frames
        for message in messages:
            if connection.ended:
                break
            if debug:
                _DEBUG_LOG.debug("in %s %s", connection.socket_id, redact_frame(message))
            connection.run(session.receive(message, now))
        return response_head(204, origin, length=0, keep_alive=keep_alive)

    def _forget(self, connection: FallbackConnection) -> None:
        if self.sessions.get(connection.key) is connection:
            del self.sessions[connection.key]
