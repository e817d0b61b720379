"""One asyncio protocol per TCP connection: HTTP/1.1 until a WebSocket upgrade.

httptools parses requests (keep-alive and pipelining included). ``GET {prefix}/app/{key}``
with ``Upgrade: websocket`` becomes a :class:`WebSocketConnection` (spec §1); requests
under ``{httpPath}/app/`` go to the HTTP fallback transports (§15), which may hold the
response open (:meth:`ServerProtocol.hold`); everything else goes to the HTTP API.
Request bodies over ``max_request_size`` are refused with 413 from their
``Content-Length`` (or as soon as a chunked body crosses the limit), before they are
read whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httptools
from websockets.utils import accept_key

from pusherd.adapters.base import Adapter
from pusherd.apps import AppRegistry
from pusherd.core.api import parse_query
from pusherd.core.session import Session, SessionSettings
from pusherd.server.fallback import FallbackTransport, ReceiveRequest
from pusherd.server.http_api import (
    EMPTY_OK,
    HttpApi,
    HttpResponse,
    PendingResponse,
    api_endpoint,
    error_response,
)
from pusherd.server.proxies import TrustedProxies
from pusherd.server.state import ServerState
from pusherd.server.websocket import (
    DebugWebSocketConnection,
    WebSocketConnection,
    WebSocketLimits,
)

log = logging.getLogger("pusherd.http")

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            426: "Upgrade Required", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}
LINGER_SECONDS = 5.0  # how long a refused request's remaining input is drained
# Pipelined answers queued behind one that waits (a cache channel's event being stored):
# beyond it the connection stops being read until half of them are written (TCP
# back-pressure on the client, nothing refused).
MAX_WAITING_ANSWERS = 256
# The largest request line plus headers. The parser keeps a head in memory until it is
# complete, so without a bound a client could grow it without end. Real heads are a few
# KB (browsers' cookies on the upgrade included).
MAX_HEAD_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class ProtocolContext:
    """Everything a TCP connection's protocol uses, passed explicitly (no server object)."""

    state: ServerState
    apps: AppRegistry
    adapter: Adapter
    http_api: HttpApi
    session_settings: SessionSettings
    websocket_limits: WebSocketLimits
    max_request_size: int  # bytes
    path_prefix: str  # mount prefix in front of /app/{key} and /apps/{id}, or ""
    fallback: FallbackTransport | None = None  # the HTTP fallback transports, if enabled
    debug_frames: bool = False  # --debug: log every frame in and out (a slower class)
    # [server] trusted_proxies: peers whose X-Forwarded-For names the client (logs,
    # console, a fallback session's address); none by default.
    trusted_proxies: TrustedProxies | None = None


def render_response(response: HttpResponse, keep_alive: bool, head: bool = False) -> bytes:
    """The response bytes; for HEAD, the headers of the GET response and no body."""
    status_line = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
    )
    return status_line.encode() + (b"" if head else response.body)


_EMPTY_OK_KEEP_ALIVE = render_response(EMPTY_OK, keep_alive=True)
_HEAD_TOO_LARGE = error_response(
    400, f"Request line and headers are larger than {MAX_HEAD_SIZE} bytes")


class _Answer:
    """A response in a connection's queue: its bytes (None while it waits), keep-alive."""

    __slots__ = ("data", "keep_alive")

    def __init__(self, data: bytes | None, keep_alive: bool) -> None:
        self.data = data
        self.keep_alive = keep_alive


class ServerProtocol(asyncio.Protocol):
    """HTTP/1.1 and WebSocket on one port (the only TCP-facing class)."""

    def __init__(self, context: ProtocolContext) -> None:
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.ws: WebSocketConnection | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}  # lower-cased names, raw values
        self._body: list[bytes] = []
        self._body_size = 0
        self._refused = False
        self._upgrading = False
        self._in_body = False  # between a request's headers and its end
        self._head_size = 0  # bytes received since the last request's headers ended
        self._header_bytes = 0  # header names and values of the current request
        self._outbox: list[bytes] | None = None  # responses held while a chunk is parsed
        self.held: ReceiveRequest | None = None  # a fallback response kept open
        # Answers in request order, once one of them waits for the adapter (a cache
        # channel's event being stored); None while no answer waits.
        self._answers: list[_Answer] | None = None
        self._reading_paused = False  # by MAX_WAITING_ANSWERS
        self._held_input: list[bytes] = []  # input received meanwhile, parsed on release
        self.last_activity = time.monotonic()  # for the idle keep-alive sweep

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection; answer 503 and close when no descriptor is left for it
        (a full node still serves HTTP: only new client connections are refused, in
        :meth:`_upgrade` and by the fallback transports)."""
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport  # type: ignore[assignment]
        state = self.context.state
        admitted = state.transport_opened(transport)
        state.http_connections.add(self)
        if not admitted:
            self._respond(error_response(503, "Server is at its open-file limit"), False)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; an upgraded one releases its session's state."""
        state = self.context.state
        state.http_connections.discard(self)
        if self.transport is not None:
            state.transport_closed(self.transport)
        if self.ws is not None:
            self.ws.closed()
        if self.held is not None:
            self.held.connection_lost()

    def close_idle(self) -> None:
        """Close a keep-alive connection that sent nothing for ``http_idle_timeout``."""
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        """The transport's buffer is over its high-water mark: a WebSocket cuts the
        slow consumer off (:meth:`WebSocketConnection.pause_writing`).
        """
        if self.ws is not None:
            self.ws.pause_writing()
        elif self.held is not None:
            self.held.pause_writing()

    def resume_writing(self) -> None:
        """Nothing to resume: a slow consumer is cut off, never waited for."""

    def eof_received(self) -> bool | None:
        """The client half-closed: pass it to the WebSocket protocol; let asyncio close."""
        if self.ws is not None:
            self.ws.receive_eof()
        return None

    def data_received(self, data: bytes) -> None:
        """Feed bytes to the WebSocket or to the HTTP parser (pipelined requests'
        answers leave in one write).
        """
        if self.ws is not None:
            self.ws.receive_data(data)
            return
        if self._refused:
            return
        if self.held is not None:
            # A client does not send a new request before the held response ends; keep
            # what it sends for then, within the request size limit.
            self._held_input.append(data)
            if sum(map(len, self._held_input)) > self.context.max_request_size:
                self._held_input = []
                if self.transport is not None:
                    self.transport.close()
            return
        self.last_activity = time.monotonic()
        # Responses to every request in this chunk (pipelining, or a client that sends
        # several at once) leave in one write: one syscall instead of one per request.
        self._outbox = []
        if not self._in_body:
            self._head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._flush_outbox()
            if not self._refused:  # an upgrade behind a final response is not taken
                self._upgrade(data[offset:])
        except httptools.HttpParserError:
            self._respond(error_response(400, "Malformed HTTP request"), False)
        finally:
            self._flush_outbox()
        if self._head_size > MAX_HEAD_SIZE and not self._in_body and self.ws is None:
            self._respond(_HEAD_TOO_LARGE, False)  # the head is still unfinished

    def _flush_outbox(self) -> None:
        outbox, self._outbox = self._outbox, None
        if outbox and self.transport is not None and not self.transport.is_closing():
            self.transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def send(self, data: bytes) -> None:
        """Write response bytes, after the answers of the chunk being parsed (a fallback
        stream's frames come through here: one call per delivery)."""
        # After a final response the write side is shut, but the parser may still be
        # reading the rest of the chunk: nothing more may be written (a write after
        # write_eof() raises).
        if self._refused:
            return
        if self._outbox is not None:
            self._outbox.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    _send = send

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        """httptools: a new request starts; reset the per-request buffers."""
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._upgrading = False
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        """httptools: a piece of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Bytes kept as received: an API request reads at most two of them.
        """httptools: one header, its name lower-cased, its value kept as bytes."""
        self._headers[name.lower()] = value
        self._header_bytes += len(name) + len(value)

    def on_headers_complete(self) -> None:
        """httptools: refuse a head over MAX_HEAD_SIZE (400) or an oversized body (413)
        from its Content-Length, answer ``Expect: 100-continue``, or note an upgrade.
        """
        self._in_body = True
        if len(self._url) + self._header_bytes > MAX_HEAD_SIZE:  # arrived in one large read
            self._respond(_HEAD_TOO_LARGE, False)
            return
        self._head_size = 0
        if self.parser.should_upgrade():
            self._upgrading = True
            return
        length = self._headers.get(b"content-length")
        limit = self.context.max_request_size
        if length is not None and length.isdigit() and int(length) > limit:
            self._refuse_large(limit)
        elif (expect := self._headers.get(b"expect")) is not None and (
            expect.lower() == b"100-continue" and self.transport
        ):
            # curl (and so PHP's Guzzle) asks before sending bodies over 1 KB and would
            # otherwise wait a second for this answer.
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        """httptools: a piece of the body; crossing ``max_request_size`` answers 413."""
        if self._refused:
            return
        self._body_size += len(body)
        limit = self.context.max_request_size
        if self._body_size > limit:
            self._refuse_large(limit)
            return
        self._body.append(body)

    def _refuse_large(self, limit: int) -> None:
        message = f"Request body is larger than {limit} bytes"
        path = self._url.partition(b"?")[0].decode("latin-1")
        prefix = self.context.path_prefix
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        app_id = path[6:].partition("/")[0][:64] if path.startswith("/apps/") else ""
        fallback = self.context.fallback
        if fallback is not None and fallback.owns(path):
            # A fallback URL answers in its own form (§15.4): plain text with CORS headers,
            # so that the page's script can read the refusal.
            self.finish(fallback.refusal(413, self._headers.get(b"origin"), message), False)
            return
        self.context.state.telemetry.api_error(
            self.parser.get_method().decode("latin-1"), api_endpoint(path), app_id, 413,
            message)
        self._respond(error_response(413, message), False)

    def on_message_complete(self) -> None:
        """httptools: the request is whole: route it to the HTTP API and answer."""
        self._in_body = False
        if self._refused or self._upgrading:
            return
        raw_url = self._url
        if raw_url[:1] == b"/":  # origin-form, the usual case: split without a URL parser
            raw_path, _, raw_query = raw_url.partition(b"?")
            raw_query = raw_query.partition(b"#")[0]
        else:
            url = httptools.parse_url(raw_url)
            raw_path, raw_query = url.path or b"/", url.query or b""
        path = raw_path.decode("latin-1")
        context = self.context
        prefix = context.path_prefix
        # /up, /ready, /metrics (and the console) answer at the root too, for load
        # balancers and scrapers that know nothing of the mount prefix.
        if prefix and path not in context.http_api.routes:
            if not path.startswith(prefix + "/"):
                self._respond(error_response(404, "Not found"), self.parser.should_keep_alive())
                return
            path = path[len(prefix):]
        method = self.parser.get_method().decode("latin-1")
        body = self._body
        fallback = context.fallback
        if fallback is not None and fallback.owns(path):
            if self.held is not None or self._answers:  # pipelined behind a held response
                return
            peer = self._client(self._headers)
            fallback.handle(
                self, method, path, raw_query.decode("latin-1"),
                body[0] if len(body) == 1 else b"".join(body), self._headers,
                str(peer[0]) if isinstance(peer, tuple) else peer if isinstance(peer, str)
                else None, self.parser.should_keep_alive())
            return
        response = context.http_api.handle(
            method, path, raw_query.decode("latin-1"),
            body[0] if len(body) == 1 else b"".join(body),
        )
        keep_alive = self.parser.should_keep_alive()
        if isinstance(response, PendingResponse):
            self._answer_when_stored(response, keep_alive, method == "HEAD")
        elif response is EMPTY_OK and keep_alive and self._outbox is not None \
                and not self._answers:
            self._outbox.append(_EMPTY_OK_KEEP_ALIVE)  # a trigger's answer, pre-rendered
        else:
            self._respond(response, keep_alive, head=method == "HEAD")

    def _client(self, headers: dict[bytes, bytes]) -> object:
        """The request's client: the TCP peer (``peername``), or the address a trusted
        proxy names in ``X-Forwarded-For`` (a string without port)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        proxies = self.context.trusted_proxies
        if proxies is None:
            return peer
        return proxies.client(peer, headers.get(b"x-forwarded-for"))

    # --- responses and upgrades ---------------------------------------------------------

    def _answer_when_stored(self, pending: PendingResponse, keep_alive: bool,
                            head: bool) -> None:
        """Queue the answer of a request whose event is being stored; it leaves (with the
        answers queued behind it, in order) when the store is done, fails, or takes
        longer than ``pending.timeout``."""
        answers = self._answers
        if answers is None:
            answers = self._answers = []
        slot = _Answer(None, keep_alive)
        answers.append(slot)
        if len(answers) >= MAX_WAITING_ANSWERS and not self._reading_paused and \
                self.transport is not None and not self.transport.is_closing():
            # Read no further requests until the queue has drained by half: the client
            # waits (TCP back-pressure); what the current chunk still holds is answered.
            self.transport.pause_reading()
            self._reading_paused = True

        def settle(failure: str | None) -> None:
            if slot.data is not None:
                return
            timer.cancel()
            response = pending.response if failure is None else pending.failure(failure)
            slot.data = render_response(response, keep_alive, head)
            self._write_answers()

        def stored(future: asyncio.Future[object]) -> None:
            if future.cancelled():
                settle("cancelled")
            elif (exc := future.exception()) is not None:
                settle(f"Redis: {type(exc).__name__}" + (f": {exc}" if str(exc) else ""))
            else:
                settle(None)

        timer = asyncio.get_running_loop().call_later(
            pending.timeout, settle, f"not stored within {pending.timeout:g} s")
        pending.stored.add_done_callback(stored)

    def _write_answers(self) -> None:
        """Write the queued answers that are ready, up to the first still waiting."""
        answers = self._answers
        while answers:
            data = answers[0].data
            if data is None:
                break
            self._finish_now(data, answers.pop(0).keep_alive)
        if self._reading_paused and len(answers or ()) <= MAX_WAITING_ANSWERS // 2:
            self._reading_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        if not answers:
            self._answers = None

    def _respond(self, response: HttpResponse, keep_alive: bool, head: bool = False) -> None:
        if response is EMPTY_OK and keep_alive and not head:
            self.finish(_EMPTY_OK_KEEP_ALIVE, keep_alive)
        else:
            self.finish(render_response(response, keep_alive, head), keep_alive)

    # --- the exchange the fallback transports use (fallback.HttpExchange) ---------------

    def hold(self, request: ReceiveRequest) -> None:
        """Keep this connection's response open for a fallback receive request: it is
        not idle (no keep-alive timeout) and further input waits for :meth:`release`."""
        self.held = request
        self.context.state.http_connections.discard(self)

    def release(self) -> None:
        """The held response ended: the connection serves requests again."""
        self.held = None
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        self.last_activity = time.monotonic()
        self.context.state.http_connections.add(self)
        if self._held_input:
            pending, self._held_input = b"".join(self._held_input), []
            asyncio.get_running_loop().call_soon(self.data_received, pending)

    def finish(self, data: bytes, keep_alive: bool) -> None:
        """Write a response's last bytes; without keep-alive, half-close after them.
        Behind an answer that waits, queued after it (answers keep the request order)."""
        if self._answers:
            self._answers.append(_Answer(data, keep_alive))
            return
        self._finish_now(data, keep_alive)

    def _finish_now(self, data: bytes, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._refused:
            return
        self._send(data)
        if not keep_alive:
            self._flush_outbox()
            # Half-close: the client gets the response and a FIN, and whatever it is still
            # sending is read and dropped. Closing outright with unread input would send
            # a TCP reset that can destroy the response before the client reads it.
            self._refused = True
            if transport.can_write_eof():
                transport.write_eof()
                asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
            else:
                transport.close()

    def _upgrade(self, rest: bytes) -> None:
        """Complete the RFC 6455 handshake for ``/app/{key}``, then let the session vet the
        connection (§1.2): the refusal or connection_established leaves in the same write
        as the 101 response."""
        transport = self.transport
        assert transport is not None
        context = self.context
        url = httptools.parse_url(self._url)
        path = (url.path or b"/").decode("latin-1")
        prefix = context.path_prefix
        # One rule for both: with a prefix, WebSocket and HTTP API live under it only.
        under_prefix = not prefix or path.startswith(prefix + "/")
        route = path[len(prefix):]
        if not under_prefix or not route.startswith("/app/") or len(route) <= len("/app/"):
            context.state.telemetry.unknown_websocket_path(
                path, transport.get_extra_info("peername"))
            self._respond(error_response(404, "WebSocket path is /app/{key}" if under_prefix
                                         else "Not found"), False)
            return
        path = route
        headers = self._headers
        raw_key = headers.get(b"sec-websocket-key")
        if (
            headers.get(b"upgrade", b"").lower() != b"websocket"
            or raw_key is None
            or self.parser.get_method() != b"GET"
        ):
            self._respond(error_response(400, "Invalid WebSocket upgrade request"), False)
            return
        key = raw_key.decode("latin-1")
        if headers.get(b"sec-websocket-version") != b"13":
            self._respond(error_response(426, "Unsupported WebSocket version (use 13)"), False)
            return
        state = context.state
        if state.draining:
            # The listener stays open during a drain so that health checks are answered;
            # new clients are sent elsewhere (pusher-js retries, a load balancer moves on).
            draining_app = context.apps.by_key(path[len("/app/"):].rstrip("/"))
            state.telemetry.upgrade_refused_draining(
                draining_app.id if draining_app is not None else "",
                transport.get_extra_info("peername"))
            self._respond(error_response(503, "Server is draining: connect to another node"),
                          False)
            return
        if state.starting:  # bound, adapter not started yet (/ready says "starting")
            self._respond(error_response(503, "Server is starting: connect again shortly"),
                          False)
            return
        if not state.admits_client():
            # Full: the clients it has are still served, and so is the HTTP API (triggers
            # to them, health checks, scrapes); a new client goes to another node.
            self._respond(error_response(
                503, "Server is at its connection limit: connect to another node"), False)
            return
        app_key = path[len("/app/"):].rstrip("/")
        app = context.apps.by_key(app_key)
        session = Session(state.new_socket_id(), app, time.monotonic(),
                          context.session_settings,
                          state.telemetry.received(app.id if app is not None else ""))
        connection_class = (DebugWebSocketConnection if context.debug_frames
                            else WebSocketConnection)
        connection = connection_class(transport, session, context.adapter, state,
                                      context.websocket_limits)
        # The 101 response and the first frame leave in one write (one syscall).
        connection.cork(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        self.ws = connection
        state.http_connections.discard(self)
        # The HTTP parser and request buffers are done with: free them for the socket's
        # lifetime (memory per idle connection is a headline figure).
        self._headers = {}
        self._body = []
        self._url = b""
        state.connections[connection.socket_id] = connection

        query = dict(parse_query((url.query or b"").decode("latin-1")))
        raw_origin = headers.get(b"origin")
        origin = None if raw_origin is None else raw_origin.decode("latin-1")[:200]
        connection.run(session.open(query, origin, state.draining))
        connection.uncork()
        peer = self._client(headers)
        if session.registered:
            state.telemetry.connection_opened(session.app.id, session.socket_id, peer,
                                              origin, query.get("protocol"))
        elif session.refusal is not None:
            code, reason = session.refusal
            state.telemetry.connection_refused(session.app.id, app_key, code, reason,
                                               peer, origin)
        if rest:
            connection.receive_data(rest)
