"""What the server's shells share at run time: open connections, limits, the drain flag.

Transport-neutral: the keepalive sweeper and the drain see every client connection as a
:class:`Connection`, whatever carries it (a WebSocket, or an HTTP fallback session).
Handlers receive this object and what else they use explicitly;
nothing receives the whole server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Protocol

from pusherd.core.ids import SocketId, format_socket_id
from pusherd.core.session import Session
from pusherd.server.telemetry import Telemetry

log = logging.getLogger("pusherd.server")


class Connection(Protocol):
    """One client connection, as the sweeper and the drain see it."""

    socket_id: SocketId
    session: Session

    def sweep(self, now: float) -> None:
        """Run the keepalive rules at monotonic time `now` (seconds): ping the idle, close
        the silent (4201), abort a closing handshake that went unanswered."""

    def terminate(self, code: int, message: str) -> None:
        """Send ``pusher:error`` with `code`, then close with the same code (§1.4)."""


class HttpConnection(Protocol):
    """A keep-alive HTTP connection, as the idle sweep sees it."""

    last_activity: float  # monotonic seconds of the last request bytes

    def close_idle(self) -> None:
        """Close the connection: it was idle for ``http_idle_timeout``."""


def _last_activity(connection: HttpConnection) -> float:
    return connection.last_activity


class ServerState:
    """Connections, transports and counters of one server process."""

    def __init__(self, max_open_connections: int, open_file_limit: int,
                 max_transports: int | None = None) -> None:
        # Open client connections by socket id (registered, or being vetted).
        self.connections: dict[SocketId, Connection] = {}
        # Every accepted TCP connection (any state): counted against the open-file limit.
        self.transports: set[asyncio.BaseTransport] = set()
        # HTTP connections not (yet) upgraded, for the idle keep-alive sweep.
        self.http_connections: set[HttpConnection] = set()
        # Client connections (WebSockets and fallback sessions) admitted at most; new
        # ones are refused (503) beyond, while HTTP requests are still served.
        self.max_open_connections = max_open_connections
        # TCP connections held at most: the client connections plus a reserve of
        # descriptors for HTTP requests (the API, health checks, scrapes) on a full node.
        self.max_transports = (max_open_connections if max_transports is None
                               else max_transports)
        self.open_file_limit = open_file_limit
        self.started = False  # set once the server is bound and its adapter started
        # Bound, adapter still starting: /up and /ready answer (ready: "starting"); new
        # clients and HTTP API requests get 503 until the adapter is up.
        self.starting = False
        self.draining = False
        # Set when the last transport closes during a drain (shutdown waits on it).
        self.drained = asyncio.Event()
        self.api_events = 0  # events accepted over the HTTP API
        self.slow_consumers = 0  # sockets cut off for a full outbound buffer
        self.telemetry = Telemetry()
        self._limit_logged_at = 0.0
        # Socket ids need uniqueness, not secrecy (an auth signature binds a socket id to a
        # channel the backend already allowed): a seeded PRNG spares two syscalls per socket.
        self._random = random.Random(os.urandom(32))

    def new_socket_id(self) -> SocketId:
        """A ``socket_id`` (§1.3) no open connection of this process holds."""
        while True:
            socket_id = format_socket_id(self._random.randrange(1, 10**10),
                                         self._random.randrange(1, 10**10))
            if socket_id not in self.connections:
                return socket_id

    def transport_opened(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new TCP connection; False when every descriptor it may use is taken
        (the caller answers 503). At :attr:`max_transports`, the HTTP connection idle the
        longest is closed to make room first: connections that send nothing cannot keep
        the HTTP API of a full node away from the backend."""
        self.transports.add(transport)
        if len(self.transports) <= self.max_transports:
            return True
        idle = min(self.http_connections, key=_last_activity, default=None)
        if idle is not None:
            idle.close_idle()
            return True
        self.refused_at_limit("TCP connection")
        return False

    def admits_client(self) -> bool:
        """Whether a new client connection (a WebSocket upgrade, a fallback session) fits
        under :attr:`max_open_connections`; if not, the refusal is counted and logged."""
        if len(self.connections) < self.max_open_connections:
            return True
        self.refused_at_limit("connection")
        return False

    def refused_at_limit(self, what: str) -> None:
        """Count a refusal at the process's limit; log it at most every 10 seconds."""
        self.telemetry.open_file_limit_hit()
        now = time.monotonic()
        if now - self._limit_logged_at > 10:
            self._limit_logged_at = now
            log.warning(
                "%s refused (503): this process holds %d client connections and %d TCP "
                "connections, its limit (open-file limit %d); raise `ulimit -n` or add "
                "processes", what, len(self.connections), len(self.transports),
                self.open_file_limit, extra={"event": "connection_limit"},
            )

    def near_connection_limit(self) -> bool:
        """Whether HTTP connections use the descriptors reserved for them (the idle
        sweep then closes connections idle a few seconds, not ``http_idle_timeout``)."""
        return len(self.transports) > self.max_open_connections

    def at_connection_limit(self) -> bool:
        """Whether the process admits no more client connections, or holds as many TCP
        connections as its open-file limit allows (a load balancer should send new
        clients elsewhere)."""
        return (len(self.connections) >= self.max_open_connections
                or len(self.transports) >= self.max_transports)

    def transport_closed(self, transport: asyncio.BaseTransport) -> None:
        """Forget a closed TCP connection; the last one of a drain sets :attr:`drained`."""
        self.transports.discard(transport)
        if self.draining and not self.transports:
            self.drained.set()
